// The run form of a proc: one typed input per declared argument, defaults shown, the server's
// validation shown next to the field it names, a dry run (validateArgs) and Run. The rules live
// on the server; the form only presents them.
import { useState } from "react";
import { call } from "./api.js";
import { EXECUTE, VALIDATE } from "./ops.js";
import { go, href } from "./ui.jsx";

/** Which argument an error names (`args.NAME` or `args[2]` style fields). */
export function argOfField(field) {
  const match = /^(?:input\.)?args\.([^.[\]]+)/.exec(field || "");
  return match ? match[1] : null;
}

/** The inputs for `specs`; `values` and `setValue` hold what was typed, `invalid` the errors. */
export function ArgFields({ idPrefix, specs, values, setValue, invalid }) {
  if (!specs.length) return <p className="muted">This proc takes no arguments.</p>;
  return specs.map((arg) => {
    const id = `${idPrefix}-${arg.name}`;
    const help = `${id}-help`;
    const error = invalid[arg.name];
    const common = {
      id,
      name: arg.name,
      value: values[arg.name] ?? "",
      onChange: (event) => setValue(arg.name, event.target.value),
      "aria-invalid": error ? "true" : undefined,
      "aria-describedby": help,
    };
    let input;
    if (arg.type === "ENUM" || arg.type === "BOOL") {
      const options = arg.type === "BOOL" ? ["true", "false"] : arg.values;
      input = (
        <select {...common}>
          <option value="">{arg.default ? `default: ${arg.default}` : arg.required ? "choose…" : "(none)"}</option>
          {options.map((v) => (
            <option key={v} value={v}>
              {v}
            </option>
          ))}
        </select>
      );
    } else {
      // Integers are typed as text so the server, not the browser, judges them and says why.
      input = (
        <input
          {...common}
          type="text"
          inputMode={arg.type === "INT" ? "numeric" : undefined}
          placeholder={arg.default ? `default: ${arg.default}` : ""}
          autoComplete="off"
          spellCheck="false"
        />
      );
    }
    const hint = [arg.type.toLowerCase(), arg.required ? "required" : "optional", arg.pattern ? `matches ${arg.pattern}` : null]
      .filter(Boolean)
      .join(" · ");
    return (
      <div className="field" key={arg.name}>
        <label htmlFor={id}>
          <span className="mono">{arg.name}</span> <small className="muted">({hint})</small>
        </label>
        {input}
        <small id={help} className="muted">
          {arg.description || ""}
        </small>
        {error ? (
          <small className="invalid" data-invalid={arg.name} role="alert">
            {error}
          </small>
        ) : null}
      </div>
    );
  });
}

/** What was typed, as `[ArgInput]` (empty fields left out so defaults apply). */
export const argInputs = (values) =>
  Object.entries(values)
    .filter(([, value]) => value !== "" && value !== undefined)
    .map(([name, value]) => ({ name, value: String(value) }));

/** Splits a server error into per-argument messages and the rest. */
export function placeErrors(error) {
  const invalid = {};
  const rest = [];
  for (const e of error.errors?.length ? error.errors : [{ message: error.message, extensions: { field: error.field } }]) {
    const field = e.extensions?.field;
    const name = argOfField(field);
    if (name) invalid[name] = e.message.replace(new RegExp(`^${field.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}:\\s*`), "");
    else rest.push(e.message);
  }
  return { invalid, rest: rest.join("; ") };
}

export function RunForm({ proc, initial = {} }) {
  const [values, setValues] = useState(initial);
  const [invalid, setInvalid] = useState({});
  const [message, setMessage] = useState(null);
  const [checked, setChecked] = useState(null);
  const [busy, setBusy] = useState(false);
  const setValue = (name, value) => {
    setValues((v) => ({ ...v, [name]: value }));
    setChecked(null);
  };

  const attempt = async (dryRun) => {
    setBusy(true);
    setInvalid({});
    setMessage(null);
    setChecked(null);
    const args = argInputs(values);
    try {
      const { validateArgs } = await call(VALIDATE, { proc: proc.name, args });
      if (dryRun) {
        setChecked(validateArgs);
        return;
      }
      const { execute } = await call(EXECUTE, { proc: proc.name, args });
      go(href("executions", execute.id));
    } catch (error) {
      const placed = placeErrors(error);
      setInvalid(placed.invalid);
      setMessage(placed.rest || null);
    } finally {
      setBusy(false);
    }
  };

  return (
    <form
      className="run-form"
      aria-label={`Run ${proc.name}`}
      onSubmit={(event) => {
        event.preventDefault();
        attempt(false);
      }}
    >
      <ArgFields idPrefix={`run-${proc.name}`} specs={proc.args} values={values} setValue={setValue} invalid={invalid} />
      {message ? (
        <p className="error" role="alert">
          {message}
        </p>
      ) : null}
      {checked ? (
        <div className="checked" role="status">
          <strong>Valid.</strong> The run would get:{" "}
          {checked.length ? (
            checked.map((a) => (
              <code key={a.name}>
                {a.name}={a.value}
              </code>
            ))
          ) : (
            <span className="muted">no arguments</span>
          )}
        </div>
      ) : null}
      <div className="actions">
        <button type="submit" disabled={busy}>
          Run {proc.name}
        </button>
        <button type="button" className="secondary" disabled={busy} onClick={() => attempt(true)}>
          Check arguments
        </button>
      </div>
    </form>
  );
}

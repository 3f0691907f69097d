//! Proc arguments from the command line (`KEY=VALUE`) and from YAML files (`-f`).

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::CliError;

/// Arguments from `file` (a YAML map; empty values are left out), then `pairs`, which win.
/// A pair without `=` or a file that cannot be read or parsed is an error, not skipped.
pub fn collect(
    pairs: &[String],
    file: Option<&Path>,
) -> Result<BTreeMap<String, String>, CliError> {
    let mut args = BTreeMap::new();
    if let Some(file) = file {
        let text = std::fs::read_to_string(file)
            .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", file.display())))?;
        let values: BTreeMap<String, serde_yaml_ng::Value> = if text.trim().is_empty() {
            BTreeMap::new()
        } else {
            serde_yaml_ng::from_str(&text).map_err(|e| {
                CliError::Usage(format!(
                    "{} is not a YAML map of argument values: {e}",
                    file.display()
                ))
            })?
        };
        for (name, value) in values {
            let value = match value {
                serde_yaml_ng::Value::Null => continue,
                serde_yaml_ng::Value::String(text) => text,
                serde_yaml_ng::Value::Number(number) => number.to_string(),
                serde_yaml_ng::Value::Bool(flag) => flag.to_string(),
                _ => {
                    return Err(CliError::Usage(format!(
                        "{}: {name} must be a plain value, not a list or map",
                        file.display()
                    )));
                }
            };
            args.insert(name, value);
        }
    }
    for pair in pairs {
        let Some((name, value)) = pair.split_once('=') else {
            return Err(CliError::Usage(format!(
                "Incorrect variable format: {pair:?} (expected KEY=VALUE)"
            )));
        };
        if name.trim().is_empty() {
            return Err(CliError::Usage(format!(
                "Incorrect variable format: {pair:?} has no name before '='"
            )));
        }
        args.insert(name.trim().to_owned(), value.to_owned());
    }
    Ok(args)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_split_at_the_first_equals_sign_and_win_over_the_file() {
        let dir = std::env::temp_dir().join(format!("proctor-args-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("vars.yaml");
        std::fs::write(&file, "A: from-file\nB: 2\nC:\n").unwrap();
        let args = collect(&["A=x=y".to_owned()], Some(&file)).unwrap();
        assert_eq!(args.get("A").map(String::as_str), Some("x=y"));
        assert_eq!(args.get("B").map(String::as_str), Some("2"));
        assert!(
            !args.contains_key("C"),
            "empty template values are left out"
        );
        assert!(collect(&["novalue".to_owned()], None).is_err());
        std::fs::write(&file, "- a\n- b\n").unwrap();
        assert!(
            collect(&[], Some(&file)).is_err(),
            "v2 ignored parse errors"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

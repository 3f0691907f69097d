// A run's log: only the rows on screen are in the page (@tanstack/react-virtual), so 200,000
// lines scroll as smoothly as 20. Each row shows its line number (the stored seq), optionally its
// time, and its text as a text node: a line holding markup stays text.
import { useEffect, useMemo, useRef, useState } from "react";
import { useVirtualizer } from "@tanstack/react-virtual";

const ROW = 20;

/** `lines` is an array that only grows; `count` is its length when it last grew. */
export function LogView({ lines, count, streamState }) {
  const box = useRef(null);
  const [follow, setFollow] = useState(true);
  const [timestamps, setTimestamps] = useState(false);
  const [search, setSearch] = useState("");
  const needle = search.trim().toLowerCase();
  // Searching shows only the matching lines (with their own numbers), live as more arrive.
  const shown = useMemo(() => {
    if (!needle) return null;
    const matches = [];
    for (let i = 0; i < count; i += 1) if (lines[i].line.toLowerCase().includes(needle)) matches.push(i);
    return matches;
  }, [needle, count, lines]);
  const total = shown ? shown.length : count;
  const virtualizer = useVirtualizer({
    count: total,
    getScrollElement: () => box.current,
    estimateSize: () => ROW,
    overscan: 30,
  });

  useEffect(() => {
    if (follow && total > 0) virtualizer.scrollToIndex(total - 1, { align: "end" });
  }, [follow, total, virtualizer]);

  const onScroll = () => {
    const el = box.current;
    if (!el) return;
    const atBottom = el.scrollTop + el.clientHeight >= el.scrollHeight - ROW;
    if (!atBottom && follow) setFollow(false);
  };

  return (
    <div className="log-panel">
      <div className="toolbar" role="toolbar" aria-label="Log">
        <label className="inline">
          <span className="visually-hidden">Search the log</span>
          <input
            type="search"
            id="log-search"
            placeholder="Search the log"
            value={search}
            onChange={(e) => setSearch(e.target.value)}
          />
        </label>
        {needle ? (
          <span className="muted" id="log-matches" aria-live="polite">
            {shown.length} of {count} lines match
          </span>
        ) : (
          <span className="muted" id="log-count">
            {count} {count === 1 ? "line" : "lines"}
          </span>
        )}
        <button type="button" className="secondary" id="follow" aria-pressed={follow} onClick={() => setFollow((f) => !f)}>
          {follow ? "Pause following" : "Follow"}
        </button>
        <label className="inline">
          <input type="checkbox" checked={timestamps} onChange={(e) => setTimestamps(e.target.checked)} /> Times
        </label>
        <span className="muted" id="stream-state">
          {streamState}
        </span>
      </div>
      <div
        className="logs"
        id="logs"
        ref={box}
        onScroll={onScroll}
        tabIndex={0}
        role="log"
        aria-label="Output"
        aria-live="off"
      >
        {count === 0 ? (
          <div className="log-empty">No output yet.</div>
        ) : (
          <div style={{ height: virtualizer.getTotalSize(), position: "relative" }}>
            {virtualizer.getVirtualItems().map((row) => {
              const entry = lines[shown ? shown[row.index] : row.index];
              return (
                <div
                  key={entry.seq}
                  className={`line ${entry.stream}`}
                  data-seq={entry.seq}
                  style={{ position: "absolute", top: 0, left: 0, right: 0, height: ROW, transform: `translateY(${row.start}px)` }}
                >
                  <span className="ln" aria-hidden="true">
                    {entry.seq}
                  </span>
                  {timestamps ? <span className="ts">{new Date(entry.timestamp).toISOString().slice(11, 23)}</span> : null}
                  <span className="text">{entry.line}</span>
                </div>
              );
            })}
          </div>
        )}
      </div>
    </div>
  );
}

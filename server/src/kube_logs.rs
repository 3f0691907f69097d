//! Reading one pod's log for the Kubernetes executor: timestamped, from a position, bounded.
//!
//! Every log is read with `timestamps=true`, so each line carries the time the runtime wrote
//! it. The position after a line is that timestamp and how many lines with exactly that
//! timestamp came so far. To continue (a re-attach after a restart, a stream that broke while
//! the API server was away), the log is opened again with `sinceTime` (whole seconds, rounded
//! down) and everything up to the position is skipped. Unlike counting lines from the start,
//! this survives log rotation, which drops the start. Cursors stored before timestamps were
//! read (no `since`) still count lines from the start.
//!
//! Timestamps are kept to the microsecond (what Postgres stores); lines within one
//! microsecond are told apart by their count.
//!
//! Lines are read as bytes: text that is not UTF-8 is replaced (and marked) instead of ending
//! the stream, and a line without a newline for 1 MiB is delivered in pieces.

use std::pin::Pin;

use chrono::{DateTime, SubsecRound as _, Utc};
use futures::io::AsyncBufRead;
use futures::{AsyncBufReadExt, Stream, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, LogParams};
use proctor_schema::ports::executor::LogCursor;

/// Longest piece of a line read at once.
const MAX_PIECE: usize = 1024 * 1024;

/// Where the consumed output of one pod ends.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Position {
    /// The timestamp of the last consumed line, and how many consumed lines carry exactly it.
    pub last: Option<(DateTime<Utc>, u64)>,
    /// Lines consumed from the log's start (a cursor stored without a timestamp).
    pub from_start: u64,
}

impl Position {
    /// The position a stored cursor names.
    pub fn of(cursor: &LogCursor) -> Self {
        match cursor.since {
            Some(since) => Self {
                last: Some((since, cursor.offset)),
                from_start: 0,
            },
            None => Self {
                last: None,
                from_start: cursor.offset,
            },
        }
    }

    /// The cursor to store after a line of `pod`.
    fn cursor(&self, pod: &str) -> LogCursor {
        match self.last {
            Some((since, count)) => LogCursor {
                source: pod.to_owned(),
                offset: count,
                since: Some(since),
            },
            None => LogCursor {
                source: pod.to_owned(),
                offset: self.from_start,
                since: None,
            },
        }
    }

    fn advance(&mut self, at: Option<DateTime<Utc>>) {
        match (at, self.last) {
            (Some(at), Some((last, count))) if at == last => self.last = Some((at, count + 1)),
            (Some(at), _) => self.last = Some((at, 1)),
            (None, _) => self.from_start += 1,
        }
    }
}

/// One piece of output to emit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Piece {
    /// The text (without its timestamp and newline).
    pub text: String,
    /// Bytes that were not UTF-8 were replaced.
    pub replaced: bool,
    /// The line goes on in the next piece.
    pub continues: bool,
    /// The position after the line (on its last piece only).
    pub cursor: Option<LogCursor>,
}

/// A piece of the log as read.
enum Chunk {
    /// A whole line (or the last piece of a cut one).
    Line(Vec<u8>),
    /// A piece of a line longer than [`MAX_PIECE`]; the line goes on.
    Piece(Vec<u8>),
    /// Text after the last newline when the stream ended: the line may not be complete.
    Tail(Vec<u8>),
}

type Chunks = Pin<Box<dyn Stream<Item = std::io::Result<Chunk>> + Send>>;

/// A pod's log being read.
pub struct PodLog {
    /// The pod.
    pub pod: String,
    chunks: Chunks,
    /// Skip everything up to here (what was consumed before this read).
    resume: Position,
    /// Lines skipped so far that carry exactly `resume`'s timestamp.
    seen_at_resume: u64,
    /// Raw lines read in this read (for a count-from-start resume).
    read: u64,
    /// Where the consumed output ends now.
    pub position: Position,
    /// The current line is being skipped (decided on its first piece).
    skipping: bool,
    /// The current line's timestamp (from its first piece).
    line_at: Option<DateTime<Utc>>,
    /// A piece of the current line was delivered already.
    mid_line: bool,
    /// Opened after the container was seen finished: the log is complete, and its end is
    /// the end (text after the last newline is a last line, not a line still being written).
    pub final_read: bool,
}

impl PodLog {
    /// Opens the log of `pod`'s `container` after `from`, following it; `final_read` when the
    /// container was already seen finished.
    pub async fn open(
        pods: &Api<Pod>,
        pod: &str,
        container: &str,
        from: Position,
        final_read: bool,
    ) -> Result<Self, kube::Error> {
        // sinceTime is whole seconds: rounded down, everything from the position on is
        // included (and what comes before it in that second is skipped).
        let since_time = from
            .last
            .and_then(|(at, _)| k8s_openapi::jiff::Timestamp::from_second(at.timestamp()).ok());
        let params = LogParams {
            container: Some(container.to_owned()),
            follow: true,
            timestamps: true,
            since_time,
            ..LogParams::default()
        };
        let log = pods.log_stream(pod, &params).await?;
        Ok(Self::reading(pod, chunks(log), from, final_read))
    }

    fn reading(pod: &str, chunks: Chunks, from: Position, final_read: bool) -> Self {
        Self {
            pod: pod.to_owned(),
            chunks,
            position: from.clone(),
            resume: from,
            seen_at_resume: 0,
            read: 0,
            skipping: false,
            line_at: None,
            mid_line: false,
            final_read,
        }
    }

    /// The next piece to emit; `None` at the end of the stream, an error when it broke. Text
    /// after the last newline counts only in a final read; otherwise it is left for the next
    /// read (the line may still be being written), and the position stays before it.
    pub async fn next(&mut self) -> Option<std::io::Result<Piece>> {
        loop {
            let (bytes, complete) = match self.chunks.next().await? {
                Ok(Chunk::Line(bytes)) => (bytes, true),
                Ok(Chunk::Piece(bytes)) => (bytes, false),
                Ok(Chunk::Tail(bytes)) if self.final_read => (bytes, true),
                Ok(Chunk::Tail(_)) => return None,
                Err(error) => return Some(Err(error)),
            };
            let (text, replaced) = match String::from_utf8(bytes) {
                Ok(text) => (text, false),
                Err(invalid) => (
                    String::from_utf8_lossy(invalid.as_bytes()).into_owned(),
                    true,
                ),
            };
            let text = if self.mid_line || self.skipping {
                text
            } else {
                // The first piece of a line: its timestamp decides.
                let (at, text) = split_timestamp(text);
                self.line_at = at;
                self.read += 1;
                self.skipping = self.consumed_before(at);
                text
            };
            if self.skipping {
                if complete {
                    self.skipping = false;
                }
                continue;
            }
            self.mid_line = !complete;
            let cursor = if complete {
                self.position.advance(self.line_at);
                Some(self.position.cursor(&self.pod))
            } else {
                None
            };
            return Some(Ok(Piece {
                text,
                replaced,
                continues: !complete,
                cursor,
            }));
        }
    }

    /// Whether the line stamped `at` was consumed before this read.
    fn consumed_before(&mut self, at: Option<DateTime<Utc>>) -> bool {
        match (self.resume.last, at) {
            (Some((last, _)), Some(at)) if at < last => true,
            (Some((last, count)), Some(at)) if at == last => {
                if self.seen_at_resume < count {
                    self.seen_at_resume += 1;
                    true
                } else {
                    false
                }
            }
            (Some(_), _) => false,
            (None, _) => self.read <= self.resume.from_start,
        }
    }
}

/// `"<RFC 3339 time> <text>"` split in two; a line without one keeps its text whole.
fn split_timestamp(line: String) -> (Option<DateTime<Utc>>, String) {
    if let Some((stamp, text)) = line.split_once(' ')
        && let Ok(at) = DateTime::parse_from_rfc3339(stamp)
    {
        // Microseconds: what Postgres keeps of a timestamp, so a stored position compares
        // equal to the line it came from (lines within one microsecond are counted).
        return (
            Some(at.with_timezone(&Utc).trunc_subsecs(6)),
            text.to_owned(),
        );
    }
    (None, line)
}

/// The log as pieces of lines (`complete` when the piece ends its line), each at most
/// [`MAX_PIECE`] bytes.
fn chunks(reader: impl AsyncBufRead + Send + Unpin + 'static) -> Chunks {
    futures::stream::unfold(
        (reader, Vec::new(), false),
        |(mut reader, mut line, ended)| async move {
            if ended {
                return None;
            }
            loop {
                let available = match reader.fill_buf().await {
                    Ok(available) => available,
                    Err(error) => return Some((Err(error), (reader, Vec::new(), true))),
                };
                if available.is_empty() {
                    // The end: a last line without a newline is a line too.
                    if line.is_empty() {
                        return None;
                    }
                    let last = std::mem::take(&mut line);
                    return Some((Ok(Chunk::Tail(last)), (reader, Vec::new(), true)));
                }
                if let Some(newline) = available.iter().position(|byte| *byte == b'\n') {
                    line.extend_from_slice(&available[..newline]);
                    reader.consume_unpin(newline + 1);
                    if line.last() == Some(&b'\r') {
                        line.pop();
                    }
                    let complete = std::mem::take(&mut line);
                    return Some((Ok(Chunk::Line(complete)), (reader, Vec::new(), false)));
                }
                let taken = available.len().min(MAX_PIECE - line.len());
                line.extend_from_slice(&available[..taken]);
                reader.consume_unpin(taken);
                if line.len() >= MAX_PIECE {
                    let cut = utf8_boundary(&line);
                    let rest = line.split_off(cut);
                    return Some((Ok(Chunk::Piece(line)), (reader, rest, false)));
                }
            }
        },
    )
    .boxed()
}

/// The longest prefix of `bytes` that does not end inside a UTF-8 character (all of it when
/// the tail is not UTF-8 at all).
fn utf8_boundary(bytes: &[u8]) -> usize {
    let len = bytes.len();
    for back in 1..=len.min(3) {
        let byte = bytes[len - back];
        if byte & 0b1100_0000 == 0b1000_0000 {
            continue;
        }
        let width = match byte {
            0x00..=0x7f => 1,
            _ if byte & 0b1110_0000 == 0b1100_0000 => 2,
            _ if byte & 0b1111_0000 == 0b1110_0000 => 3,
            _ if byte & 0b1111_1000 == 0b1111_0000 => 4,
            _ => 1,
        };
        let start = len - back;
        return if start + width > len && start > 0 {
            start
        } else {
            len
        };
    }
    len
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(second: u32, nanos: u32) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + i64::from(second), nanos).expect("a time")
    }

    fn log_of(text: &'static [u8], from: Position) -> PodLog {
        PodLog::reading("p", chunks(futures::io::Cursor::new(text)), from, true)
    }

    async fn texts(mut log: PodLog) -> Vec<(String, Option<LogCursor>)> {
        let mut out = Vec::new();
        while let Some(piece) = log.next().await {
            let piece = piece.expect("no error");
            out.push((piece.text, piece.cursor));
        }
        out
    }

    const STAMPED: &[u8] = b"2023-11-14T22:13:20.1Z one\n\
        2023-11-14T22:13:20.1Z two\n\
        2023-11-14T22:13:20.5Z three\n\
        2023-11-14T22:13:21Z four\n";

    #[tokio::test]
    async fn lines_lose_their_timestamp_and_carry_the_position_after_them() {
        let read = texts(log_of(STAMPED, Position::default())).await;
        let shown: Vec<&str> = read.iter().map(|(text, _)| text.as_str()).collect();
        assert_eq!(shown, ["one", "two", "three", "four"]);
        assert_eq!(
            read[1].1.as_ref().map(|c| (c.since, c.offset)),
            Some((Some(at(0, 100_000_000)), 2))
        );
        assert_eq!(
            read[3].1.as_ref().map(|c| (c.since, c.offset)),
            Some((Some(at(1, 0)), 1))
        );
    }

    #[tokio::test]
    async fn a_resumed_read_skips_exactly_what_was_consumed_even_within_one_instant() {
        // Consumed: "one" (the first of two lines stamped .1).
        let from = Position {
            last: Some((at(0, 100_000_000), 1)),
            from_start: 0,
        };
        let read = texts(log_of(STAMPED, from)).await;
        let shown: Vec<&str> = read.iter().map(|(text, _)| text.as_str()).collect();
        assert_eq!(shown, ["two", "three", "four"]);
    }

    #[tokio::test]
    async fn a_rotated_log_resumes_by_time_not_by_count() {
        // The log now starts at "three" (rotation dropped "one" and "two"), and "two" was the
        // last line consumed: nothing is skipped that was not consumed.
        let rotated: &[u8] = b"2023-11-14T22:13:20.5Z three\n2023-11-14T22:13:21Z four\n";
        let from = Position {
            last: Some((at(0, 100_000_000), 2)),
            from_start: 0,
        };
        let shown: Vec<String> = texts(log_of(rotated, from))
            .await
            .into_iter()
            .map(|(t, _)| t)
            .collect();
        assert_eq!(shown, ["three", "four"]);
    }

    #[tokio::test]
    async fn bytes_that_are_not_utf8_are_replaced_and_the_stream_goes_on() {
        let text: &[u8] = b"2023-11-14T22:13:20Z bad \xff\xfe byte\n2023-11-14T22:13:21Z next\n";
        let mut log = log_of(text, Position::default());
        let first = log.next().await.expect("a line").expect("no error");
        assert!(first.replaced);
        assert_eq!(first.text, "bad \u{fffd}\u{fffd} byte");
        let second = log.next().await.expect("a line").expect("no error");
        assert_eq!(second.text, "next");
        assert!(!second.replaced);
    }

    #[tokio::test]
    async fn text_after_the_last_newline_waits_unless_the_container_ended() {
        let cut: &[u8] = b"2023-11-14T22:13:20Z whole\n2023-11-14T22:13:21Z half of a li";
        let mut following = PodLog::reading(
            "p",
            chunks(futures::io::Cursor::new(cut)),
            Position::default(),
            false,
        );
        assert_eq!(
            following
                .next()
                .await
                .expect("a line")
                .expect("no error")
                .text,
            "whole"
        );
        assert!(
            following.next().await.is_none(),
            "the half line is left for the next read"
        );
        assert_eq!(
            following.position.last,
            Some((at(0, 0), 1)),
            "and not consumed"
        );
        let shown = texts(log_of(cut, Position::default())).await;
        assert_eq!(
            shown.last().map(|(text, _)| text.as_str()),
            Some("half of a li")
        );
    }

    #[test]
    fn cuts_never_split_a_character() {
        let text = "aé€".as_bytes();
        assert_eq!(utf8_boundary(&text[..2]), 1);
        assert_eq!(utf8_boundary(&text[..4]), 3);
        assert_eq!(utf8_boundary(&text[..5]), 3);
        assert_eq!(utf8_boundary(text), 6);
    }
}

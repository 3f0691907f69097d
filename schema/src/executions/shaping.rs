//! What happens to an output line before anyone sees it: secret values are masked, then
//! over-long lines are split. Masking comes first so a split can never cut a secret in two
//! and leave both halves readable.
//!
//! A secret is masked as written and in the encodings a script most often prints it in:
//! base64 (standard and URL-safe, with and without padding), URL-encoding (`%XX`, and `+`
//! for spaces) and JSON string escaping. Masking cannot help with values a proc splits,
//! reverses, hashes or encodes otherwise (the book's security model, `docs/src/security.md`).
//!
//! When an executor cuts an over-long line (it reads at most 1 MiB at a time), the pieces are
//! masked as one stream ([`Masker::mask_piece`]): the end of each piece that could be the
//! start of a secret is held back and masked with the next piece.

/// Longest stored line, in bytes; longer lines become several lines, never fewer.
pub const MAX_LINE_BYTES: usize = 16 * 1024;

/// What secret values are replaced with.
pub const MASK: &str = "***";

/// Masks the secret values of one execution in its output, in one pass over each line
/// (Aho-Corasick, leftmost-longest: a secret containing another is masked whole).
#[derive(Clone, Default)]
pub struct Masker {
    /// Longest first.
    needles: Vec<String>,
    /// Finds every needle at once; `None` when there is none.
    automaton: Option<aho_corasick::AhoCorasick>,
}

/// Never prints the values it masks.
impl std::fmt::Debug for Masker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Masker")
            .field("needles", &self.needles.len())
            .finish()
    }
}

impl Masker {
    /// A masker for these secret values. A multi-line value is also masked line by line,
    /// because output is read line by line.
    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a str>) -> Self {
        let mut needles: Vec<String> = Vec::new();
        let mut add = |needle: String| {
            if !needle.is_empty() && !needles.contains(&needle) {
                needles.push(needle);
            }
        };
        for secret in secrets {
            let parts = std::iter::once(secret).chain(secret.lines());
            for part in parts {
                let part = part.trim_end_matches('\r');
                add(part.to_owned());
            }
            if secret.is_empty() {
                continue;
            }
            for encoded in encodings(secret) {
                add(encoded);
            }
        }
        Self::of_needles(needles)
    }

    /// This masker, masking `secret` too (a value made for the run after it was submitted,
    /// such as its identity token).
    pub fn and(&self, secret: &str) -> Self {
        let mut needles = self.needles.clone();
        for needle in Self::new([secret]).needles {
            if !needles.contains(&needle) {
                needles.push(needle);
            }
        }
        Self::of_needles(needles)
    }

    fn of_needles(mut needles: Vec<String>) -> Self {
        needles.sort_by_key(|needle| std::cmp::Reverse(needle.len()));
        let automaton = (!needles.is_empty())
            .then(|| {
                aho_corasick::AhoCorasick::builder()
                    .match_kind(aho_corasick::MatchKind::LeftmostLongest)
                    .build(&needles)
                    .ok()
            })
            .flatten();
        Self { needles, automaton }
    }

    /// The longest text masked; a cut piece holds back one byte less than this.
    fn window(&self) -> usize {
        self.needles.first().map_or(0, String::len)
    }

    /// Masks `piece`, the next part of a line cut by the executor, after `carry` (what an
    /// earlier piece held back). With `continues`, the end that could still be the start of
    /// a secret is held back in `carry` and the rest returned; without, everything is.
    pub fn mask_piece(&self, carry: &mut String, piece: &str, continues: bool) -> String {
        carry.push_str(piece);
        let masked = self.mask(carry);
        carry.clear();
        if !continues {
            return masked;
        }
        let hold = self.window().saturating_sub(1);
        let mut cut = masked.len().saturating_sub(hold);
        while !masked.is_char_boundary(cut) {
            cut -= 1;
        }
        carry.push_str(&masked[cut..]);
        let mut out = masked;
        out.truncate(cut);
        out
    }

    /// `line` with every secret value replaced by `***`.
    pub fn mask(&self, line: &str) -> String {
        match &self.automaton {
            Some(automaton) => {
                let mut masked = String::with_capacity(line.len());
                automaton.replace_all_with(line, &mut masked, |_, _, out| {
                    out.push_str(MASK);
                    true
                });
                masked
            }
            // The automaton could not be built (far beyond any real set of secrets): mask
            // one needle after the other, longest first, rather than not at all.
            None => {
                let mut masked = line.to_owned();
                for needle in &self.needles {
                    if masked.contains(needle.as_str()) {
                        masked = masked.replace(needle.as_str(), MASK);
                    }
                }
                masked
            }
        }
    }
}

/// The forms of `secret` a script commonly prints instead of the value itself.
fn encodings(secret: &str) -> Vec<String> {
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let bytes = secret.as_bytes();
    let mut forms = vec![
        STANDARD.encode(bytes),
        STANDARD_NO_PAD.encode(bytes),
        URL_SAFE.encode(bytes),
        URL_SAFE_NO_PAD.encode(bytes),
    ];
    // Inside a longer base64 text (e.g. `user:secret` in a Basic header) the secret starts at
    // any of three byte offsets: the characters that encode only its bytes are masked (the
    // one or two at each edge that mix in neighbouring bytes stay).
    for engine in [STANDARD_NO_PAD, URL_SAFE_NO_PAD] {
        for offset in 0..3usize {
            let mut shifted = vec![0u8; offset];
            shifted.extend_from_slice(bytes);
            let encoded = engine.encode(&shifted);
            let first = [0, 2, 3][offset];
            let last = shifted.len() * 8 / 6;
            if let Some(inner) = encoded.get(first..last)
                && inner.len() >= 8
            {
                forms.push(inner.to_owned());
            }
        }
    }
    // URL encodings as common encoders write them: which bytes they keep, whether a space
    // becomes `+`, either hex case.
    let unreserved = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~');
    let keep_sets: [(&dyn Fn(u8) -> bool, bool); 6] = [
        (&unreserved, false),                     // RFC 3986, encodeURIComponent
        (&unreserved, true),                      // HTML forms
        (&|b| unreserved(b) || b == b'/', false), // Python quote()
        (
            &|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'),
            true,
        ), // PHP urlencode
        (
            &|b| unreserved(b) || b";,/?:@&=+$#!*'()".contains(&b),
            false,
        ), // encodeURI
        (&|_| false, false),                      // every byte
    ];
    for (keep, space_plus) in keep_sets {
        for lower in [false, true] {
            let mut encoded = String::new();
            for &byte in bytes {
                if space_plus && byte == b' ' {
                    encoded.push('+');
                } else if keep(byte) {
                    encoded.push(char::from(byte));
                } else if lower {
                    encoded.push_str(&format!("%{byte:02x}"));
                } else {
                    encoded.push_str(&format!("%{byte:02X}"));
                }
            }
            forms.push(encoded);
        }
    }
    // JSON strings as common encoders write them: serde/JavaScript (controls, quote and
    // backslash only), non-ASCII as \uXXXX (Python), `/` as `\/` (PHP), `<>&` and
    // U+2028/U+2029 as \uXXXX (Go).
    for ascii in [false, true] {
        for slash in [false, true] {
            for html in [false, true] {
                forms.push(json_string(secret, ascii, slash, html));
            }
        }
    }
    // Short secrets' encodings would mask ordinary words; the value itself is still masked.
    forms.retain(|form| form.len() >= 4 && form != secret);
    forms.sort();
    forms.dedup();
    forms
}

/// The inside of a JSON string holding `text`, escaped the way an encoder with these habits
/// escapes it.
fn json_string(text: &str, ascii: bool, slash: bool, html: bool) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '/' if slash => out.push_str("\\/"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' if html => {
                out.push_str(&format!("\\u{:04x}", u32::from(c)));
            }
            c if c.is_control() || (ascii && !c.is_ascii()) => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// `line` cut into pieces of at most [`MAX_LINE_BYTES`], on character boundaries.
pub fn split_long(line: String) -> Vec<String> {
    if line.len() <= MAX_LINE_BYTES {
        return vec![line];
    }
    let mut pieces = Vec::with_capacity(line.len() / MAX_LINE_BYTES + 1);
    let mut rest = line.as_str();
    while rest.len() > MAX_LINE_BYTES {
        let mut cut = MAX_LINE_BYTES;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        pieces.push(rest[..cut].to_owned());
        rest = &rest[cut..];
    }
    pieces.push(rest.to_owned());
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_masked_in_their_common_encodings() {
        use base64::Engine as _;
        let secret = "s3cr3t value/+?";
        let masker = Masker::new([secret]);
        let engines = [
            base64::engine::general_purpose::STANDARD,
            base64::engine::general_purpose::STANDARD_NO_PAD,
            base64::engine::general_purpose::URL_SAFE,
            base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ];
        for engine in engines {
            let encoded = engine.encode(secret);
            let masked = masker.mask(&format!("token={encoded};"));
            assert_eq!(masked, "token=***;", "{encoded}");
        }
        assert_eq!(masker.mask("q=s3cr3t%20value%2F%2B%3F"), "q=***");
        // Embedded at every byte offset of a longer base64 text, as in `Basic user:secret`.
        for prefix in ["", "u:", "us:", "use:"] {
            for engine in [
                base64::engine::general_purpose::STANDARD,
                base64::engine::general_purpose::URL_SAFE_NO_PAD,
            ] {
                let header = engine.encode(format!("{prefix}{secret}!tail"));
                let masked = masker.mask(&header);
                assert!(masked.contains("***"), "{prefix:?}: {header} -> {masked}");
                assert!(masked.len() < header.len(), "{prefix:?}");
            }
        }
        assert_eq!(masker.mask("q=s3cr3t+value%2F%2B%3F"), "q=***");
        assert_eq!(
            masker.mask("q=s3cr3t%20value/%2B%3F"),
            "q=***",
            "Python quote()"
        );
        assert_eq!(masker.mask("q=s3cr3t%20value/+?"), "q=***", "encodeURI");
        assert_eq!(
            masker.mask("q=%73%33%63%72%33%74%20%76%61%6c%75%65%2f%2b%3f"),
            "q=***"
        );
        let unicode = Masker::new(["T\u{f8}ken/<x>&\u{1F600}"]);
        for (encoder, form) in [
            ("Python", "T\\u00f8ken/<x>&\\ud83d\\ude00"),
            ("PHP", "T\\u00f8ken\\/<x>&\\ud83d\\ude00"),
            ("Go", "T\u{f8}ken/\\u003cx\\u003e\\u0026\u{1F600}"),
        ] {
            assert_eq!(
                unicode.mask(&format!("{{\"k\":\"{form}\"}}")),
                "{\"k\":\"***\"}",
                "{encoder}"
            );
        }
        assert_eq!(
            Masker::new(["Tok~en 12"]).mask("Tok%7Een+12"),
            "***",
            "PHP urlencode"
        );
        let json = serde_json::to_string(&serde_json::json!({ "k": "s3cr3t \"x\\" })).unwrap();
        let quoted = Masker::new(["s3cr3t \"x\\"]);
        assert_eq!(quoted.mask(&json), r#"{"k":"***"}"#);
    }

    #[test]
    fn a_secret_cut_between_two_pieces_is_masked() {
        let masker = Masker::new(["hunter2-secret"]);
        let mut carry = String::new();
        let mut out = masker.mask_piece(&mut carry, &format!("{}hunter2-", "x".repeat(100)), true);
        out.push_str(&masker.mask_piece(&mut carry, "secret and more", false));
        assert_eq!(out, format!("{}*** and more", "x".repeat(100)));
        assert!(!out.contains("hunter"));
    }

    #[test]
    fn every_occurrence_of_every_secret_is_masked() {
        let masker = Masker::new(["hunter2", "tok-123", "hunter2-long"]);
        assert_eq!(
            masker.mask("pw=hunter2 token=tok-123 again hunter2-long hunter2"),
            "pw=*** token=*** again *** ***"
        );
        assert_eq!(masker.mask("nothing here"), "nothing here");
    }

    #[test]
    fn multi_line_secrets_are_masked_line_by_line() {
        let masker = Masker::new(["-----BEGIN KEY-----\nMIIabc\n-----END KEY-----"]);
        assert_eq!(masker.mask("MIIabc"), "***");
        assert_eq!(masker.mask("x -----END KEY----- y"), "x *** y");
    }

    #[test]
    fn empty_secrets_mask_nothing() {
        assert_eq!(Masker::new([""]).mask("text"), "text");
    }

    #[test]
    fn long_lines_are_split_on_character_boundaries_and_nothing_is_lost() {
        let line = "é".repeat(MAX_LINE_BYTES); // two bytes each
        let pieces = split_long(line.clone());
        assert!(pieces.len() >= 2);
        assert!(pieces.iter().all(|piece| piece.len() <= MAX_LINE_BYTES));
        assert_eq!(pieces.concat(), line);
        assert_eq!(split_long("short".into()), vec!["short".to_owned()]);
    }
}

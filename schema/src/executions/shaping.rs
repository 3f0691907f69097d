//! What happens to an output line before anyone sees it: secret values are masked, then
//! over-long lines are split. Masking comes first so a split can never cut a secret in two
//! and leave both halves readable.

/// Longest stored line, in bytes; longer lines become several lines, never fewer.
pub const MAX_LINE_BYTES: usize = 16 * 1024;

/// What secret values are replaced with.
pub const MASK: &str = "***";

/// Masks the secret values of one execution in its output.
#[derive(Clone, Debug, Default)]
pub struct Masker {
    /// Longest first, so a secret containing another is masked whole.
    needles: Vec<String>,
}

impl Masker {
    /// A masker for these secret values. A multi-line value is also masked line by line,
    /// because output is read line by line.
    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a str>) -> Self {
        let mut needles: Vec<String> = Vec::new();
        for secret in secrets {
            let parts = std::iter::once(secret).chain(secret.lines());
            for part in parts {
                let part = part.trim_end_matches('\r');
                if !part.is_empty() && !needles.iter().any(|known| known == part) {
                    needles.push(part.to_owned());
                }
            }
        }
        needles.sort_by_key(|needle| std::cmp::Reverse(needle.len()));
        Self { needles }
    }

    /// `line` with every secret value replaced by `***`.
    pub fn mask(&self, line: &str) -> String {
        let mut masked = line.to_owned();
        for needle in &self.needles {
            if masked.contains(needle.as_str()) {
                masked = masked.replace(needle.as_str(), MASK);
            }
        }
        masked
    }
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

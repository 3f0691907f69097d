//! `Accept`-style headers (`Accept`, `Accept-Encoding`): the listed ranges with their weights,
//! read one way for every endpoint that negotiates.

use axum::http::{HeaderMap, HeaderName};

/// Each listed range (lowercased, parameters other than `q` dropped) with its weight (`q`,
/// 1 when absent, 0 when unreadable), in the order listed, over every instance of `name`.
pub fn ranges(headers: &HeaderMap, name: HeaderName) -> Vec<(String, f32)> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|range| {
            let mut parts = range.split(';');
            let essence = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
            if essence.is_empty() {
                return None;
            }
            let mut weight = 1.0f32;
            for parameter in parts {
                if let Some((key, value)) = parameter.split_once('=')
                    && key.trim().eq_ignore_ascii_case("q")
                {
                    weight = value.trim().parse().unwrap_or(0.0);
                }
            }
            Some((essence, weight))
        })
        .collect()
}

/// Whether one of `wanted` is listed with a weight above 0.
pub fn accepts(headers: &HeaderMap, name: HeaderName, wanted: &[&str]) -> bool {
    ranges(headers, name)
        .iter()
        .any(|(essence, weight)| *weight > 0.0 && wanted.contains(&essence.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::header::ACCEPT;

    #[test]
    fn ranges_carry_their_weights() {
        let mut headers = HeaderMap::new();
        headers.insert(
            ACCEPT,
            "Text/HTML;level=1, application/json;q=0.5, x/y;q=oops"
                .parse()
                .unwrap(),
        );
        assert_eq!(
            ranges(&headers, ACCEPT),
            [
                ("text/html".to_owned(), 1.0),
                ("application/json".to_owned(), 0.5),
                ("x/y".to_owned(), 0.0)
            ]
        );
        assert!(accepts(&headers, ACCEPT, &["application/json"]));
        assert!(
            !accepts(&headers, ACCEPT, &["x/y"]),
            "q unreadable counts as 0"
        );
    }
}

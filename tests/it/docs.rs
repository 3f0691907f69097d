//! The book under `docs/` builds with mdBook without a warning, and no internal link is broken:
//! every `href` and `src` between the built pages names a file that exists and, with a
//! fragment, an element with that id; every relative link and image of the README names a file
//! of the repository and, into the book, a heading that exists.
//!
//! mdBook comes from `PROCTOR_MDBOOK` (`./tests/run.sh` installs it into `target/tools/bin`);
//! without it the test fails under `CI=true` and reports itself skipped otherwise.

use std::collections::{BTreeSet, HashMap};
use std::path::{Component, Path, PathBuf};

use proctor_tests::infra::is_ci;
use regex::Regex;

/// The repository's root (also the tour's, `tests/it/tour.rs`).
pub(crate) fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("the repository exists")
}

fn mdbook() -> Option<PathBuf> {
    let configured = std::env::var_os("PROCTOR_MDBOOK").map(PathBuf::from);
    let found = configured
        .clone()
        .or_else(|| Some(repository().join("target/tools/bin/mdbook")))
        .filter(|path| path.is_file());
    if found.is_none() {
        assert!(
            !is_ci(),
            "CI=true but mdBook is missing (PROCTOR_MDBOOK={configured:?}); ./tests/run.sh installs it"
        );
        eprintln!(
            "SKIPPED: mdBook is not installed; ./tests/run.sh installs it into target/tools/bin"
        );
    }
    found
}

/// `path` with `.` and `..` folded away (the file need not exist).
fn normalise(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("read a directory") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                pending.push(path);
            } else {
                found.push(path);
            }
        }
    }
    found
}

/// The ids of the elements of the HTML file at `page`, read once.
struct Ids {
    pattern: Regex,
    cache: HashMap<PathBuf, BTreeSet<String>>,
}

impl Ids {
    fn new() -> Self {
        Self {
            // `id=` as an attribute of its own, not the end of `data-id=`.
            pattern: Regex::new(r#"\sid=["']([^"']+)["']"#).expect("a valid pattern"),
            cache: HashMap::new(),
        }
    }

    fn has(&mut self, page: &Path, id: &str) -> bool {
        let pattern = &self.pattern;
        self.cache
            .entry(page.to_owned())
            .or_insert_with(|| {
                let html = std::fs::read_to_string(page).unwrap_or_default();
                pattern
                    .captures_iter(&html)
                    .map(|c| c[1].to_owned())
                    .collect()
            })
            .contains(id)
    }
}

/// `text` with its %-escapes decoded (an anchor of a heading with non-ASCII letters).
fn decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

/// Whether `target` leaves the site (another scheme) rather than naming one of its files.
fn is_external(target: &str) -> bool {
    target.starts_with("//")
        || target
            .split_once(':')
            .is_some_and(|(scheme, _)| !scheme.contains('/') && !scheme.contains('#'))
}

/// Builds the mdBook at `book` into `out`; fails on an error or a warning.
fn build(mdbook: &Path, book: &Path, out: &Path) {
    let output = std::process::Command::new(mdbook)
        .arg("build")
        .arg(book)
        .arg("--dest-dir")
        .arg(out)
        .output()
        .expect("mdbook runs");
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "mdbook build failed:\n{log}");
    let warnings: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("WARN") || line.contains("ERROR"))
        .collect();
    assert!(warnings.is_empty(), "mdbook warned:\n{log}");
}

/// The links of the built book at `out` that name no file or no anchor, and how many links
/// were checked.
fn broken_links(out: &Path, ids: &mut Ids) -> (usize, Vec<String>) {
    // Quoted either way (mdBook quotes with ", raw HTML in a chapter may not).
    let link = Regex::new(r#"\s(?:href|src)=(?:"([^"]*)"|'([^']*)')"#).expect("a valid pattern");
    let mut broken = Vec::new();
    let mut checked = 0;
    let mut pages = files(out);
    pages.sort();
    for page in pages {
        let name = page.strip_prefix(out).expect("inside the book");
        // 404.html's links are relative to the site's root, wherever it is served from.
        if page.extension().is_none_or(|e| e != "html") || name == Path::new("404.html") {
            continue;
        }
        let html = std::fs::read_to_string(&page).expect("read a page");
        for target in link.captures_iter(&html).filter_map(|c| {
            c.get(1)
                .or_else(|| c.get(2))
                .map(|m| decode(m.as_str()).replace("&amp;", "&"))
        }) {
            if target.is_empty() || is_external(&target) {
                continue;
            }
            checked += 1;
            let (path, fragment) = target.split_once('#').unwrap_or((&target, ""));
            let path = path.split('?').next().unwrap_or(path);
            let file = if path.is_empty() {
                page.clone()
            } else {
                normalise(&page.parent().expect("a page is in a directory").join(path))
            };
            let file = if file.is_dir() {
                file.join("index.html")
            } else {
                file
            };
            if !file.is_file() {
                broken.push(format!("{}: {target} (no such file)", name.display()));
            } else if !fragment.is_empty() && !ids.has(&file, fragment) {
                broken.push(format!("{}: {target} (no such anchor)", name.display()));
            }
        }
    }
    (checked, broken)
}

/// The anchor GitHub gives a heading: lower case, spaces as hyphens, punctuation but `-` and
/// `_` dropped.
fn github_slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

#[test]
fn the_book_builds_and_its_links_resolve() {
    let Some(mdbook) = mdbook() else { return };
    let out = tempfile::tempdir().expect("an output directory");
    build(&mdbook, &repository().join("docs"), out.path());
    let mut ids = Ids::new();
    let (checked, mut broken) = broken_links(out.path(), &mut ids);
    assert!(checked > 100, "the check saw the links ({checked})");

    // The README's links into the repository and the book.
    let readme = std::fs::read_to_string(repository().join("README.md")).expect("the README");
    // `[text](target)` or `[text](target "title")`.
    let markdown = Regex::new(r#"\]\(([^)\s]+)(?:\s+"[^"]*")?\)"#).expect("a valid pattern");
    let headings: BTreeSet<String> = readme
        .lines()
        .filter(|line| line.starts_with('#'))
        .map(|line| github_slug(line.trim_start_matches('#')))
        .collect();
    let mut from_readme = 0;
    for target in markdown.captures_iter(&readme).map(|c| c[1].to_owned()) {
        if is_external(&target) {
            continue;
        }
        from_readme += 1;
        let (path, fragment) = target.split_once('#').unwrap_or((&target, ""));
        if path.is_empty() {
            if !headings.contains(fragment) {
                broken.push(format!("README.md: {target} (no such heading)"));
            }
            continue;
        }
        if !repository().join(path).exists() {
            broken.push(format!("README.md: {target} (no such file)"));
            continue;
        }
        // SUMMARY.md is the book's table of contents, not a page of it.
        if let Some(chapter) = path.strip_prefix("docs/src/")
            && let Some(stem) = chapter.strip_suffix(".md")
            && stem != "SUMMARY"
        {
            let page = out.path().join(format!("{stem}.html"));
            if !page.is_file() {
                broken.push(format!(
                    "README.md: {target} (not in the book's SUMMARY.md)"
                ));
            } else if !fragment.is_empty() && !ids.has(&page, fragment) {
                broken.push(format!("README.md: {target} (no such heading)"));
            }
        }
    }
    assert!(from_readme >= 10, "the README links into the book");
    assert!(
        broken.is_empty(),
        "{} broken links:\n{}",
        broken.len(),
        broken.join("\n")
    );
}

#[test]
fn a_broken_link_or_a_warning_is_caught() {
    // The checks themselves, on a two-page book with one good link, a link to a page that does
    // not exist and one to a heading that does not exist.
    let Some(mdbook) = mdbook() else { return };
    let book = tempfile::tempdir().expect("a book");
    let src = book.path().join("src");
    std::fs::create_dir_all(&src).expect("src");
    std::fs::write(book.path().join("book.toml"), "[book]\ntitle = \"t\"\n").expect("book.toml");
    std::fs::write(src.join("SUMMARY.md"), "# S\n\n- [A](a.md)\n- [B](b.md)\n").expect("summary");
    std::fs::write(
        src.join("a.md"),
        "# A\n\n[good](b.md#b-heading) [missing page](c.md) [missing anchor](b.md#nope)\n",
    )
    .expect("a.md");
    std::fs::write(src.join("b.md"), "# B heading\n").expect("b.md");
    let out = book.path().join("out");
    build(&mdbook, book.path(), &out);
    let (_, broken) = broken_links(&out, &mut Ids::new());
    let in_a: Vec<&String> = broken.iter().filter(|b| b.starts_with("a.html:")).collect();
    assert_eq!(
        in_a,
        [
            "a.html: c.html (no such file)",
            "a.html: b.html#nope (no such anchor)"
        ],
        "{broken:#?}"
    );

    // A chapter SUMMARY.md lists but src/ lacks fails the build (book.toml's create-missing).
    let missing_chapter = tempfile::tempdir().expect("a book");
    std::fs::create_dir_all(missing_chapter.path().join("src")).expect("src");
    std::fs::copy(
        repository().join("docs/book.toml"),
        missing_chapter.path().join("book.toml"),
    )
    .expect("book.toml");
    std::fs::write(
        missing_chapter.path().join("src/SUMMARY.md"),
        "# S\n\n- [Typo](tpyo.md)\n",
    )
    .expect("summary");
    let output = std::process::Command::new(&mdbook)
        .arg("build")
        .arg(missing_chapter.path())
        .output()
        .expect("mdbook runs");
    assert!(
        !output.status.success(),
        "a missing chapter fails the build"
    );
    assert_eq!(github_slug("The two commands"), "the-two-commands");
    assert_eq!(github_slug("A five-minute tour!"), "a-five-minute-tour");

    // An unclosed tag (a bare <token> in prose) is a warning, and fails the build.
    std::fs::write(src.join("b.md"), "# B heading\n\nSend <token> here.\n").expect("b.md");
    let failed = std::panic::catch_unwind(|| build(&mdbook, book.path(), &out));
    assert!(failed.is_err(), "a warning fails the build");
}

//! The book's API reference must equal what the served schema generates (like the SDL test):
//! a field, type or description added without regenerating the page fails here.

use std::path::Path;

#[test]
fn the_api_reference_is_current() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/src/reference/api.md");
    let generated = proctor_schema::reference::api(&proctor_schema::sdl());
    let updating = std::env::var_os("PROCTOR_UPDATE_DOCS").is_some()
        && std::env::var("CI").map_or(true, |ci| ci != "true");
    if updating {
        std::fs::write(&path, &generated).expect("write the API reference");
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/src/reference/api.md is out of date (the schema changed); regenerate it with\n  {}\n\
         and commit it",
        proctor_schema::reference::REGENERATE
    );
}

#[test]
fn a_new_field_changes_the_page() {
    let sdl = proctor_schema::sdl();
    let page = proctor_schema::reference::api(&sdl);
    assert!(page.contains("## `Query` (object)"), "{page}");
    assert!(page.contains("| `logMatches(proc: String, pattern: String!)` |"));
    let grown = sdl.replacen(
        "type Query {",
        "type Query {\n\t\"\"\"A field nobody documented yet.\"\"\"\n\tbrandNew: Int!",
        1,
    );
    let regenerated = proctor_schema::reference::api(&grown);
    assert_ne!(regenerated, page);
    assert!(regenerated.contains("| `brandNew` | `Int!` | A field nobody documented yet. |"));
}

//! The committed SDL must equal what the server serves: the CLI's typed operations are
//! generated from `schema/schema.graphql`, so a difference means server and CLI have drifted.

use std::path::Path;

#[test]
fn committed_schema_graphql_matches_the_served_schema() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("schema.graphql");
    let served = proctor_schema::sdl();
    if std::env::var_os("PROCTOR_UPDATE_SCHEMA").is_some() {
        std::fs::write(&path, &served).expect("write schema.graphql");
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == served,
        "schema/schema.graphql is out of date; regenerate it with\n  \
         PROCTOR_UPDATE_SCHEMA=1 cargo nextest run -p proctor-schema --test sdl\n\
         (or `cargo run -p proctor-server -- schema > schema/schema.graphql`) and commit it"
    );
}

//! `proctor-run`: how proctord starts an isolated local run (see `proctor_server::sandbox`).

fn main() {
    proctor_server::sandbox::helper_main()
}

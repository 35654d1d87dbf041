//! The crate's files import each other in one direction only: the model
//! (event, inbound, webhook, text, ...) is a leaf that the parsers (`wire`),
//! the body readers (`request`) and the gate (`layer`) build on, never the
//! reverse. `scripts/import-cycles.py` counts the circles; this test runs it
//! on `src/` and on a small crate with a known circle (so that a script that
//! found nothing at all would fail here too).
//!
//! It needs `python3` (standard library only) on the `PATH`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/import-cycles.py")
}

fn run(src: &Path) -> Output {
    Command::new("python3")
        .arg(script())
        .arg(src)
        .output()
        .unwrap_or_else(|e| panic!("cannot run python3 {}: {e}", script().display()))
}

#[test]
fn the_core_has_no_import_circles() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let out = run(&src);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "import circles in {}:\n{stdout}{}",
        src.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(" 0 import circle(s)"), "{stdout}");
}

#[test]
fn the_script_finds_a_circle_through_a_re_export() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    std::fs::create_dir(src.join("model")).unwrap();
    // lib.rs re-exports `Value` from model/value.rs; value.rs reaches the
    // parser, which names `crate::Value`: the circle passes through the
    // re-export to the file that defines the item.
    let files = [
        ("lib.rs", "mod model;\nmod parser;\npub use model::value::Value;\n"),
        ("model/mod.rs", "pub(crate) mod value;\n"),
        (
            "model/value.rs",
            "pub struct Value;\nimpl Value {\n    pub fn parse() -> Value { crate::parser::parse() }\n}\n",
        ),
        (
            "parser.rs",
            "// use crate::nothing; (a comment does not count)\nuse crate::Value;\npub(crate) fn parse() -> Value { Value }\n",
        ),
    ];
    for (name, text) in files {
        std::fs::write(src.join(name), text).unwrap();
    }
    let out = run(src);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("1 import circle(s)"), "{stdout}");
    assert!(stdout.contains("model/value.rs parser.rs"), "{stdout}");

    // Without the call back into the parser, the model is a leaf again.
    std::fs::write(src.join("model/value.rs"), "pub struct Value;\n").unwrap();
    let out = run(src);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

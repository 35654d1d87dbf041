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
        (
            "lib.rs",
            "mod model;\nmod parser;\npub use model::value::Value;\n",
        ),
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

/// Every file that `file` reaches, directly or through others, by the
/// script's graph of `src/`: one line `file: reached reached ...` each.
fn reach(src: &Path) -> String {
    let code = r#"
import importlib.util, sys
spec = importlib.util.spec_from_file_location("import_cycles", sys.argv[1])
script = importlib.util.module_from_spec(spec)
spec.loader.exec_module(script)
graph = script.Crate(sys.argv[2]).graph()
for start in sorted(graph):
    seen, todo = set(), [start]
    while todo:
        for nxt in graph.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    print(start + ":", " ".join(sorted(seen)))
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(code)
        .arg(script())
        .arg(src)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_model_and_the_mime_decoders_reach_no_parser_nor_the_gate() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let reach = reach(&src);
    let model = [
        "error.rs",
        "event",
        "inbound.rs",
        "webhook.rs",
        "raw.rs",
        "text.rs",
        "limits.rs",
        "mime/",
    ];
    let parsers = ["wire/", "request.rs", "layer/", "extract.rs"];
    let mut checked = 0;
    for line in reach.lines() {
        let (file, reached) = line.split_once(':').unwrap();
        if !model.iter().any(|m| file.starts_with(m)) {
            continue;
        }
        checked += 1;
        for target in reached.split_whitespace() {
            assert!(
                !parsers.iter().any(|p| target.starts_with(p)),
                "{file} reaches {target}: the model and the MIME decoders are leaves"
            );
        }
    }
    // The files are there to check (a renamed folder would pass vacuously).
    assert!(checked >= 12, "only {checked} model files found:\n{reach}");
    assert!(reach.contains("mime/rfc2047.rs:"), "{reach}");
}

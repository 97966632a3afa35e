//! Whatever an operator types, validation never panics: random edits of the
//! shipped inventories either validate (and then render) or come back as
//! diagnostics that point inside the file.

use std::path::Path;

use amqctl::render::render;
use amqctl::Topology;
use proptest::prelude::*;

fn env(name: &str) -> Option<String> {
    match name {
        "HOME" => Some("/home/prop".to_string()),
        _ => name
            .starts_with("AMQCTL_")
            .then(|| "prop-secret".to_string()),
    }
}

fn inventories() -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = std::fs::read_dir("inventories")
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            (p.display().to_string(), text)
        })
        .collect();
    v.sort();
    v
}

/// One edit of an inventory's lines.
#[derive(Debug, Clone)]
enum Edit {
    DeleteLine(usize),
    DuplicateLine(usize),
    SwapLines(usize, usize),
    /// Replace a value after `=` with one of a few troublesome values.
    ReplaceValue(usize, &'static str),
    InsertText(usize, usize, String),
}

fn edit() -> impl Strategy<Value = Edit> {
    let values = prop::sample::select(vec![
        "0",
        "-1",
        "65536",
        "99999999999999999999",
        "\"\"",
        "\"../x\"",
        "\"local\"",
        "\"a b\"",
        "true",
        "[]",
        "{}",
        "{ env = \"AMQCTL_X\" }",
        "\"replicated\"",
        "\"shared-file\"",
        "3.5",
        "\"é\"",
    ]);
    prop_oneof![
        any::<usize>().prop_map(Edit::DeleteLine),
        any::<usize>().prop_map(Edit::DuplicateLine),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Edit::SwapLines(a, b)),
        (any::<usize>(), values).prop_map(|(l, v)| Edit::ReplaceValue(l, v)),
        (
            any::<usize>(),
            any::<usize>(),
            "[\\[\\]=\"#a-z_.{}, \n0-9]{1,12}"
        )
            .prop_map(|(l, c, s)| Edit::InsertText(l, c, s)),
    ]
}

fn apply(text: &str, edits: &[Edit]) -> String {
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    for e in edits {
        if lines.is_empty() {
            break;
        }
        let n = lines.len();
        match e {
            Edit::DeleteLine(i) => {
                lines.remove(i % n);
            }
            Edit::DuplicateLine(i) => {
                let l = lines[i % n].clone();
                lines.insert(i % n, l);
            }
            Edit::SwapLines(a, b) => lines.swap(a % n, b % n),
            Edit::ReplaceValue(i, v) => {
                let l = &mut lines[i % n];
                if let Some(eq) = l.find('=') {
                    l.truncate(eq + 1);
                    l.push(' ');
                    l.push_str(v);
                }
            }
            Edit::InsertText(i, c, s) => {
                let l = &mut lines[i % n];
                let at = l
                    .char_indices()
                    .map(|(i, _)| i)
                    .nth(c % (l.chars().count() + 1))
                    .unwrap_or(l.len());
                l.insert_str(at, s);
            }
        }
    }
    lines.join("\n") + "\n"
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn edited_inventories_never_panic(which in any::<usize>(), edits in prop::collection::vec(edit(), 1..4)) {
        let all = inventories();
        let (name, text) = &all[which % all.len()];
        let text = apply(text, &edits);
        let lines = text.lines().count();
        match Topology::from_str(Path::new(name), &text, &env) {
            Ok((topo, _)) => {
                let plan = render(&topo).expect("a valid topology renders");
                prop_assert!(plan.files().count() > 0);
            }
            Err(d) => {
                prop_assert!(!d.errors.is_empty());
                for e in d.all() {
                    prop_assert!(e.location.line >= 1 && e.location.line <= lines.max(1) + 1,
                        "{e} points outside the {lines}-line file");
                    prop_assert!(e.location.column >= 1);
                    prop_assert!(!e.message.is_empty());
                }
            }
        }
    }
}

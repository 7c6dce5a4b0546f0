//! The README's Rust code blocks are what a reader pastes: `lib.rs` includes the README as a
//! doctest (`cargo test -p cmwq --doc` compiles and runs each block), and this test checks that
//! each block is compiled exactly as shown: no lines hidden from the reader (rustdoc's `# `
//! prefix), and a whole program (a `fn main`), so pasting it into `src/main.rs` compiles too.

const README: &str = include_str!("../../../README.md");

/// The bodies of the README's ```rust blocks.
fn rust_blocks() -> Vec<String> {
    let mut blocks = Vec::new();
    let mut cur: Option<Vec<&str>> = None;
    for line in README.lines() {
        match (&mut cur, line.trim_end()) {
            (None, "```rust") => cur = Some(Vec::new()),
            (Some(b), "```") => {
                blocks.push(b.join("\n"));
                cur = None;
            }
            (Some(b), l) => b.push(l),
            _ => {}
        }
    }
    assert!(cur.is_none(), "an unterminated ```rust block in README.md");
    blocks
}

#[test]
fn readme_rust_blocks_compile_as_pasted() {
    let blocks = rust_blocks();
    assert!(!blocks.is_empty(), "README.md has a ```rust block");
    for b in &blocks {
        let hidden: Vec<&str> =
            b.lines().filter(|l| l.trim_start() == "#" || l.trim_start().starts_with("# ")).collect();
        assert!(hidden.is_empty(), "README block has lines a reader does not see pasted: {hidden:?}");
        assert!(b.contains("fn main()"), "README block is not a whole program:\n{b}");
    }
}

#[test]
fn readme_calls_blocking_only_inside_an_item() {
    // `cmwq::blocking` is a hint to the pool running the caller: outside an item it does nothing.
    for b in rust_blocks() {
        for l in b.lines().filter(|l| l.contains("blocking(")) {
            assert!(l.contains("spawn(") || l.contains("Work::new("), "blocking outside an item: {l}");
        }
    }
}

//! A line diff for `weft apply --dry-run`: what would change in a resource, as `-`/`+`
//! lines with a little context, like `diff -u` without the hunk headers. Resources are
//! small, so a plain longest-common-subsequence table is fast enough.

/// Lines of context kept around each change.
const CONTEXT: usize = 2;

/// The diff from `old` to `new`, or an empty string when they are equal.
pub fn lines(old: &str, new: &str) -> String {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    // lcs[i][j]: length of the longest common subsequence of a[i..] and b[j..].
    let mut lcs = vec![vec![0u32; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut ops: Vec<(char, &str)> = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            ops.push((' ', a[i]));
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            // Removals before additions, as diff -u prints them.
            ops.push(('-', a[i]));
            i += 1;
        } else {
            ops.push(('+', b[j]));
            j += 1;
        }
    }
    let changed: Vec<usize> = (0..ops.len()).filter(|&k| ops[k].0 != ' ').collect();
    if changed.is_empty() {
        return String::new();
    }
    let keep = |k: usize| {
        changed
            .iter()
            .any(|&c| k + CONTEXT >= c && k <= c + CONTEXT)
    };
    let mut out = String::new();
    let mut skipped = false;
    for (k, (op, line)) in ops.iter().enumerate() {
        if keep(k) {
            if skipped {
                out.push_str("  ...\n");
                skipped = false;
            }
            out.push(*op);
            out.push(' ');
            out.push_str(line);
            out.push('\n');
        } else {
            skipped = true;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::lines;

    #[test]
    fn equal_texts_have_no_diff() {
        assert_eq!(lines("a\nb\n", "a\nb\n"), "");
    }

    #[test]
    fn changes_show_with_context() {
        let old = "1\n2\n3\n4\n5\n6\n7\nweight: 90\n8\n";
        let new = "1\n2\n3\n4\n5\n6\n7\nweight: 50\n8\n";
        assert_eq!(
            lines(old, new),
            "  ...\n  6\n  7\n- weight: 90\n+ weight: 50\n  8\n"
        );
    }

    #[test]
    fn additions_and_removals() {
        assert_eq!(lines("a\nc\n", "a\nb\nc\n"), "  a\n+ b\n  c\n");
        assert_eq!(lines("a\nb\n", ""), "- a\n- b\n");
    }
}

//! Splits a `run_args` string into words the way a POSIX shell would for a
//! literal command line, without running anything: blanks separate words,
//! `'…'` keeps everything literally, `"…"` keeps everything but lets `\`
//! escape `"`, `\`, `$`, `` ` `` and a newline, and an unquoted `\` escapes the
//! next character. There is no expansion of any kind: `$HOME`, `*` and
//! `` `cmd` `` stay as written.

/// The words, or what is wrong with the quoting.
pub fn split(text: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    // A word exists once anything, even an empty pair of quotes, was seen.
    let mut in_word = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\n' | '\r' => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err(unterminated('\'', text)),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(e @ ('"' | '\\' | '$' | '`')) => word.push(e),
                            Some('\n') => {}
                            Some(other) => {
                                word.push('\\');
                                word.push(other);
                            }
                            None => return Err(unterminated('"', text)),
                        },
                        Some(c) => word.push(c),
                        None => return Err(unterminated('"', text)),
                    }
                }
            }
            '\\' => match chars.next() {
                Some('\n') => {}
                Some(e) => {
                    in_word = true;
                    word.push(e);
                }
                None => {
                    return Err(
                        "run_args ends with a lone backslash; escape it as \\\\ or remove it"
                            .to_owned(),
                    )
                }
            },
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

fn unterminated(quote: char, text: &str) -> String {
    format!("run_args {text:?} has an unterminated {quote} quote; close it or escape it with \\")
}

#[cfg(test)]
mod tests {
    use super::split;

    fn ok(text: &str) -> Vec<String> {
        split(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn blanks_separate_words() {
        assert_eq!(
            ok("  -e A=1\t--network  none\n"),
            ["-e", "A=1", "--network", "none"]
        );
        assert!(ok("").is_empty());
        assert!(ok("   ").is_empty());
    }

    #[test]
    fn quotes_and_escapes_follow_the_shell() {
        assert_eq!(
            ok(r#"-e 'A=x y' -e "B=p q""#),
            ["-e", "A=x y", "-e", "B=p q"]
        );
        assert_eq!(ok(r#"a'b'"c"d"#), ["abcd"]);
        assert_eq!(ok(r#"'' """#), ["", ""]);
        assert_eq!(ok(r"a\ b"), ["a b"]);
        assert_eq!(ok(r#""a\"b\\c\$d\e""#), [r#"a"b\c$d\e"#]);
        assert_eq!(ok(r#"'it''s'"#), ["its"]);
        assert_eq!(ok(r#"'a\b'"#), [r"a\b"]);
        assert_eq!(ok("a\\\nb"), ["ab"]);
    }

    #[test]
    fn nothing_is_expanded() {
        assert_eq!(ok("$HOME * `id` $(id)"), ["$HOME", "*", "`id`", "$(id)"]);
    }

    #[test]
    fn unterminated_quotes_and_trailing_backslash_are_errors() {
        for bad in ["'open", "\"open", "a\\", "\"a\\"] {
            let e = split(bad).unwrap_err();
            assert!(
                e.contains("unterminated") || e.contains("backslash"),
                "{bad}: {e}"
            );
        }
    }
}

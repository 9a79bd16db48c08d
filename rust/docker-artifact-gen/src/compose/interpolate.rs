//! Variables in compose files and `.env` files, substituted as docker compose
//! does: `$VAR`, `${VAR}`, `${VAR:-default}` / `${VAR-default}`,
//! `${VAR:?error}` / `${VAR?error}`, `${VAR:+other}` / `${VAR+other}`, and
//! `$$` for a literal `$`. Defaults and messages may hold substitutions
//! themselves. Pure: the variables come in as a map.

use std::collections::BTreeMap;

/// The variables substitutions read, and the names read while unset (compose
/// warns about each and substitutes an empty string).
pub struct Vars<'a> {
    pub values: &'a BTreeMap<String, String>,
    pub unset: Vec<String>,
}

impl<'a> Vars<'a> {
    pub fn new(values: &'a BTreeMap<String, String>) -> Vars<'a> {
        Vars {
            values,
            unset: Vec::new(),
        }
    }

    /// `text` with every substitution done, or what is wrong with it.
    pub fn substitute(&mut self, text: &str) -> Result<String, String> {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(at) = rest.find('$') {
            out.push_str(&rest[..at]);
            rest = &rest[at + 1..];
            if let Some(after) = rest.strip_prefix('$') {
                out.push('$');
                rest = after;
            } else if let Some(after) = rest.strip_prefix('{') {
                let end = closing_brace(after).ok_or_else(|| {
                    format!("`${{` without its `}}` in {text:?}; write `$$` for a literal `$`")
                })?;
                out.push_str(&self.braced(&after[..end], text)?);
                rest = &after[end + 1..];
            } else {
                let len = name_len(rest);
                if len == 0 {
                    return Err(format!(
                        "`$` not followed by a variable name in {text:?}; write `$$` for a literal `$`"
                    ));
                }
                out.push_str(&self.lookup(&rest[..len]).unwrap_or_default());
                rest = &rest[len..];
            }
        }
        out.push_str(rest);
        Ok(out)
    }

    fn lookup(&mut self, name: &str) -> Option<String> {
        let value = self.values.get(name).cloned();
        if value.is_none() && !self.unset.iter().any(|n| n == name) {
            self.unset.push(name.to_owned());
        }
        value
    }

    /// The inside of `${…}`.
    fn braced(&mut self, inner: &str, text: &str) -> Result<String, String> {
        let len = name_len(inner);
        let (name, op) = inner.split_at(len);
        if name.is_empty() {
            return Err(format!(
                "`${{{inner}}}` in {text:?} does not start with a variable name"
            ));
        }
        let value = self.values.get(name).cloned();
        let (colon, op) = match op.strip_prefix(':') {
            Some(rest) => (true, rest),
            None => (false, op),
        };
        // With a colon, an empty value counts as unset.
        let set = value.as_deref().is_some_and(|v| !colon || !v.is_empty());
        let mut chars = op.chars();
        match chars.next() {
            None if !colon => Ok(self.lookup(name).unwrap_or_default()),
            Some('-') => match set {
                true => Ok(value.unwrap_or_default()),
                false => self.substitute(chars.as_str()),
            },
            Some('+') => match set {
                true => self.substitute(chars.as_str()),
                false => Ok(String::new()),
            },
            Some('?') => match set {
                true => Ok(value.unwrap_or_default()),
                false => {
                    let message = self.substitute(chars.as_str())?;
                    Err(if message.is_empty() {
                        format!("variable {name} is required and is not set")
                    } else {
                        format!("variable {name} is required: {message}")
                    })
                }
            },
            _ => Err(format!(
                "`${{{inner}}}` in {text:?} is not one of ${{VAR}}, ${{VAR:-default}}, \
                 ${{VAR-default}}, ${{VAR:?error}}, ${{VAR?error}}, ${{VAR:+other}}, ${{VAR+other}}"
            )),
        }
    }
}

/// Length of the variable name at the start of `text`.
fn name_len(text: &str) -> usize {
    let mut len = 0;
    for (i, c) in text.char_indices() {
        let ok = c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit());
        if !ok {
            break;
        }
        len = i + c.len_utf8();
    }
    len
}

/// Where the `}` closing a `${` just before `text` is, counting nested ones.
fn closing_brace(text: &str) -> Option<usize> {
    let mut depth = 0usize;
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'$' if bytes.get(i + 1) == Some(&b'{') => {
                depth += 1;
                i += 1;
            }
            b'}' if depth == 0 => return Some(i),
            b'}' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    None
}

/// Parses a `.env` (or `env_file`) file as docker compose reads it:
/// `KEY=VALUE` lines, optional `export `, `#` comments, blank lines; values
/// single-quoted (literal), double-quoted (`\n`, `\t`, `\"`, `\\` escapes and
/// substitutions) or bare (trimmed, ` #` starts a comment, substitutions).
/// Substitutions see `outer` and the keys defined earlier in the file, the
/// outer ones first, as compose does. `name` is only for messages.
pub fn parse_env_file(
    name: &str,
    text: &str,
    outer: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, String> {
    let mut values: BTreeMap<String, String> = BTreeMap::new();
    for (n, raw) in text.lines().enumerate() {
        let at = || format!("{name}:{}", n + 1);
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").map_or(line, str::trim_start);
        let Some((key, value)) = line.split_once('=') else {
            return Err(format!("{}: {line:?} is not KEY=VALUE", at()));
        };
        let key = key.trim_end();
        if key.is_empty() || name_len(key) != key.len() {
            return Err(format!(
                "{}: {key:?} is not a variable name (letters, digits and _, not starting with a digit)",
                at()
            ));
        }
        let value = value.trim_start();
        let mut scope = values.clone();
        for (k, v) in outer {
            scope.insert(k.clone(), v.clone());
        }
        let mut vars = Vars::new(&scope);
        let value = if let Some(quoted) = value.strip_prefix('\'') {
            let end = quoted
                .find('\'')
                .ok_or_else(|| format!("{}: the single quote is not closed", at()))?;
            quoted[..end].to_owned()
        } else if let Some(quoted) = value.strip_prefix('"') {
            let mut out = String::new();
            let mut chars = quoted.chars();
            loop {
                match chars.next() {
                    None => return Err(format!("{}: the double quote is not closed", at())),
                    Some('"') => break,
                    Some('\\') => match chars.next() {
                        Some('n') => out.push('\n'),
                        Some('t') => out.push('\t'),
                        Some(c @ ('"' | '\\' | '$')) => {
                            if c == '$' {
                                out.push('$');
                            }
                            out.push(c)
                        }
                        Some(c) => {
                            out.push('\\');
                            out.push(c);
                        }
                        None => return Err(format!("{}: the double quote is not closed", at())),
                    },
                    Some(c) => out.push(c),
                }
            }
            vars.substitute(&out)
                .map_err(|e| format!("{}: {e}", at()))?
        } else {
            let bare = match value.find(" #") {
                Some(i) => &value[..i],
                None => value,
            };
            vars.substitute(bare.trim_end())
                .map_err(|e| format!("{}: {e}", at()))?
        };
        values.insert(key.to_owned(), value);
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn sub(values: &BTreeMap<String, String>, text: &str) -> Result<String, String> {
        Vars::new(values).substitute(text)
    }

    #[test]
    fn every_form_compose_knows() {
        let v = vars(&[("TAG", "1.2"), ("EMPTY", ""), ("HOST", "db")]);
        let cases = [
            ("app:$TAG", "app:1.2"),
            ("app:${TAG}", "app:1.2"),
            ("${TAG}x$TAG.y", "1.2x1.2.y"),
            ("${MISSING}", ""),
            ("${MISSING:-3.0}", "3.0"),
            ("${MISSING-3.0}", "3.0"),
            ("${EMPTY:-3.0}", "3.0"),
            ("${EMPTY-3.0}", ""),
            ("${TAG:-3.0}", "1.2"),
            ("${TAG:+set}", "set"),
            ("${EMPTY:+set}", ""),
            ("${EMPTY+set}", "set"),
            ("${MISSING+set}", ""),
            ("${MISSING:-${HOST}:5432}", "db:5432"),
            ("${MISSING:-${ALSO_MISSING:-x}}", "x"),
            ("cost $$5 and $${TAG}", "cost $5 and ${TAG}"),
            ("${TAG:?needed}", "1.2"),
            ("no variables", "no variables"),
            ("", ""),
        ];
        for (text, want) in cases {
            assert_eq!(sub(&v, text).as_deref(), Ok(want), "{text}");
        }
    }

    #[test]
    fn required_variables_fail_with_their_message() {
        let v = vars(&[("EMPTY", "")]);
        assert_eq!(
            sub(&v, "${TOKEN?set TOKEN in .env}"),
            Err("variable TOKEN is required: set TOKEN in .env".into())
        );
        assert_eq!(
            sub(&v, "${EMPTY:?}"),
            Err("variable EMPTY is required and is not set".into())
        );
        assert_eq!(sub(&v, "${EMPTY?}"), Ok(String::new()));
    }

    #[test]
    fn malformed_substitutions_are_refused_with_the_fix() {
        let v = vars(&[]);
        for text in [
            "price $5",
            "a $ b",
            "${",
            "${TAG",
            "${}",
            "${1A}",
            "${TAG/x/y}",
            "${TAG:=x}",
        ] {
            let err = sub(&v, text).unwrap_err();
            assert!(err.contains(&format!("{text:?}")), "{text}: {err}");
        }
    }

    #[test]
    fn unset_names_are_collected_once() {
        let v = vars(&[]);
        let mut vars = Vars::new(&v);
        vars.substitute("$A ${A} ${B:-x} $C").unwrap();
        assert_eq!(vars.unset, ["A", "C"]);
    }

    #[test]
    fn env_files_read_as_compose_reads_them() {
        let text = "# comment\n\nTAG=1.2\nexport REG = registry.local:5000 \nIMAGE=${REG}/app:$TAG # note\n\
                    QUOTED=\"a \\\"b\\\"\\n$TAG\"\nLITERAL='$TAG # kept'\nEMPTY=\nURL=http://x/#frag\n";
        let outer = vars(&[("TAG", "from-shell")]);
        let got = parse_env_file(".env", text, &outer).unwrap();
        assert_eq!(got["TAG"], "1.2");
        assert_eq!(got["REG"], "registry.local:5000");
        // The shell's TAG wins over the file's inside substitutions, as in compose.
        assert_eq!(got["IMAGE"], "registry.local:5000/app:from-shell");
        assert_eq!(got["QUOTED"], "a \"b\"\nfrom-shell");
        assert_eq!(got["LITERAL"], "$TAG # kept");
        assert_eq!(got["EMPTY"], "");
        assert_eq!(got["URL"], "http://x/#frag");
    }

    #[test]
    fn bad_env_lines_name_the_file_and_line() {
        let outer = BTreeMap::new();
        for (text, want) in [
            (
                "A=1\nJUST_A_WORD\n",
                ".env:2: \"JUST_A_WORD\" is not KEY=VALUE",
            ),
            ("1A=x\n", ".env:1: \"1A\" is not a variable name"),
            ("A='open\n", ".env:1: the single quote is not closed"),
            ("A=\"open\n", ".env:1: the double quote is not closed"),
            ("A=${B\n", ".env:1: `${` without its `}`"),
        ] {
            let err = parse_env_file(".env", text, &outer).unwrap_err();
            assert!(err.starts_with(want), "{text:?}: {err}");
        }
    }
}

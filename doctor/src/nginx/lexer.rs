//! nginx's configuration syntax, token by token: words (bare, `"double"` or `'single'`
//! quoted, with `\` escapes), `;`, `{`, `}`, and `#` comments to the end of the line.
//!
//! The rules are nginx's own (`ngx_conf_file.c`, and crossplane's lexer that mirrors it): a
//! `{` inside `${name}` belongs to the word, a quote only opens a word at its start, and a
//! quoted word must be followed by a space or one of `;{}`.

/// One token and the line it starts on (1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Token {
    /// A directive name or argument, quotes removed and escapes resolved.
    Word(String),
    /// `;`
    Semicolon,
    /// `{`
    Open,
    /// `}`
    Close,
}

/// A syntax error and its line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LexError {
    pub(crate) line: usize,
    pub(crate) message: String,
}

/// Splits `text` into tokens with their lines.
pub(crate) fn tokens(text: &str) -> Result<Vec<(Token, usize)>, LexError> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    let mut line = 1;
    while let Some(&c) = chars.peek() {
        match c {
            '\n' => {
                line += 1;
                chars.next();
            }
            c if c.is_whitespace() => {
                chars.next();
            }
            '#' => while chars.next_if(|&c| c != '\n').is_some() {},
            ';' | '{' | '}' => {
                chars.next();
                let token = match c {
                    ';' => Token::Semicolon,
                    '{' => Token::Open,
                    _ => Token::Close,
                };
                out.push((token, line));
            }
            '"' | '\'' => {
                let start = line;
                chars.next();
                let mut word = String::new();
                loop {
                    match chars.next() {
                        None => {
                            return Err(LexError {
                                line: start,
                                message: format!("unterminated {c}quoted{c} string"),
                            })
                        }
                        Some('\\') => match chars.next() {
                            Some(e) if e == c || e == '\\' => word.push(e),
                            Some('n') => word.push('\n'),
                            Some('t') => word.push('\t'),
                            Some('r') => word.push('\r'),
                            Some(e) => {
                                if e == '\n' {
                                    line += 1;
                                }
                                word.push('\\');
                                word.push(e);
                            }
                            None => continue,
                        },
                        Some(q) if q == c => break,
                        Some(other) => {
                            if other == '\n' {
                                line += 1;
                            }
                            word.push(other);
                        }
                    }
                }
                if let Some(&next) = chars.peek() {
                    if !(next.is_whitespace() || matches!(next, ';' | '{' | '}')) {
                        return Err(LexError {
                            line,
                            message: format!("unexpected \"{next}\" after a quoted string"),
                        });
                    }
                }
                out.push((Token::Word(word), start));
            }
            _ => {
                let mut word = String::new();
                let mut in_var = false;
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace()
                        || c == ';'
                        || (c == '{' && !in_var)
                        || (c == '}' && !in_var)
                    {
                        break;
                    }
                    chars.next();
                    match c {
                        '\\' => {
                            word.push('\\');
                            if let Some(e) = chars.next() {
                                if e == '\n' {
                                    line += 1;
                                }
                                word.push(e);
                            }
                            continue;
                        }
                        '{' if word.ends_with('$') => in_var = true,
                        '}' if in_var => in_var = false,
                        _ => {}
                    }
                    word.push(c);
                }
                out.push((Token::Word(word), line));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<String> {
        tokens(text)
            .unwrap()
            .into_iter()
            .map(|(t, _)| match t {
                Token::Word(w) => w,
                Token::Semicolon => ";".into(),
                Token::Open => "{".into(),
                Token::Close => "}".into(),
            })
            .collect()
    }

    #[test]
    fn words_quotes_comments_and_variables() {
        assert_eq!(
            words("location / { # comment ; {\n  proxy_set_header Host \"$host:${port}x\";\n}"),
            [
                "location",
                "/",
                "{",
                "proxy_set_header",
                "Host",
                "$host:${port}x",
                ";",
                "}"
            ]
        );
        assert_eq!(
            words(r#"return 200 'a \'b\' c';"#),
            ["return", "200", "a 'b' c", ";"]
        );
        assert!(
            tokens("return 200 'it''s';").is_err(),
            "a quote must end the word"
        );
    }

    #[test]
    fn lines_are_counted_and_errors_say_where() {
        let t = tokens("a;\n\nb \"x\ny\";\nc;").unwrap();
        assert_eq!(
            t.iter().map(|(_, l)| *l).collect::<Vec<_>>(),
            [1, 1, 3, 3, 4, 5, 5]
        );
        assert_eq!(tokens("a \"open;\n").unwrap_err().line, 1);
        assert!(tokens("a \"x\"y;").is_err());
    }
}

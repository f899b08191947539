//! nginx's configuration files into a tree of directives, with `include` followed as nginx
//! follows it: paths relative to the main file's directory, glob patterns expanded in
//! sorted order, a missing plain path an error and a pattern matching nothing not one.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::glob;
use super::lexer::{tokens, Token};

/// How deep includes may nest before doctor calls it a loop.
const MAX_INCLUDE_DEPTH: usize = 32;

/// The directives of nginx and its common modules that take a `{ ... }` block; so does
/// any `*_block` (the Lua module's). A `{` after any other is nginx's "not terminated by
/// ;" error, a `;` after one of these its "has no opening {".
const BLOCKS: &[&str] = &[
    "http",
    "server",
    "location",
    "upstream",
    "events",
    "if",
    "map",
    "geo",
    "types",
    "limit_except",
    "split_clients",
    "stream",
    "mail",
    "charset_map",
    "match",
];

/// Whether `name` takes a block inside `parent` (`server` is simple inside `upstream`).
fn takes_block(name: &str, parent: &str) -> bool {
    if name == "server" && parent == "upstream" {
        return false;
    }
    BLOCKS.contains(&name) || name.ends_with("_block")
}

/// One directive, where it was written, and its block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    /// The directive's name (`proxy_pass`).
    pub name: String,
    /// Its arguments, unquoted.
    pub args: Vec<String>,
    /// The file it is in.
    pub file: Arc<Path>,
    /// Its line (1-based).
    pub line: usize,
    /// The directives of its `{ ... }` block, includes expanded; `None` for a simple one.
    pub block: Option<Vec<Directive>>,
}

/// A problem with the configuration, where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// The file.
    pub file: PathBuf,
    /// The line, when the problem has one.
    pub line: Option<usize>,
    /// What is wrong, in nginx's words where nginx has them.
    pub message: String,
}

/// A parsed configuration: the main file's directives, every file read, and every problem.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// The main file.
    pub main: PathBuf,
    /// The top-level directives, includes expanded in place.
    pub directives: Vec<Directive>,
    /// Every file read, the main one first.
    pub files: Vec<PathBuf>,
    /// Every problem found; parsing goes on past each one where it can.
    pub errors: Vec<ParseError>,
}

// === impl Directive ===

impl Directive {
    /// The block's directives (empty for a simple directive).
    pub fn children(&self) -> &[Directive] {
        self.block.as_deref().unwrap_or_default()
    }

    /// The first argument, or "".
    pub fn arg(&self) -> &str {
        self.args.first().map_or("", String::as_str)
    }

    /// `file:line`.
    pub fn at(&self) -> String {
        format!("{}:{}", self.file.display(), self.line)
    }
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.file.display(), self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

/// Reads `main` and everything it includes.
/// A relative `main` is taken from the current directory, as `nginx -c` takes it.
pub fn parse(main: &Path) -> Config {
    let main = std::path::absolute(main).unwrap_or_else(|_| main.to_owned());
    let mut config = Config {
        main: main.clone(),
        ..Config::default()
    };
    let prefix = main.parent().unwrap_or(Path::new("/")).to_owned();
    config.directives = read_file(&main, &prefix, 0, "", &mut config).unwrap_or_default();
    config
}

fn read_file(
    path: &Path,
    prefix: &Path,
    depth: usize,
    context: &str,
    config: &mut Config,
) -> Option<Vec<Directive>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => {
            config.errors.push(ParseError {
                file: path.to_owned(),
                line: None,
                message: format!("cannot be read: {e}"),
            });
            return None;
        }
    };
    config.files.push(path.to_owned());
    let file: Arc<Path> = Arc::from(path);
    let tokens = match tokens(&text) {
        Ok(tokens) => tokens,
        Err(e) => {
            config.errors.push(ParseError {
                file: path.to_owned(),
                line: Some(e.line),
                message: e.message,
            });
            return None;
        }
    };
    let mut at = 0;
    let directives = block(
        &tokens, &mut at, &file, false, context, prefix, depth, config,
    );
    Some(directives)
}

/// The directives up to the end of the file, or (`nested`) up to the `}` closing a block;
/// `context` is the directive whose block this is (or includes this file).
#[allow(clippy::too_many_arguments)]
fn block(
    tokens: &[(Token, usize)],
    at: &mut usize,
    file: &Arc<Path>,
    nested: bool,
    context: &str,
    prefix: &Path,
    depth: usize,
    config: &mut Config,
) -> Vec<Directive> {
    let mut out = Vec::new();
    let error = |config: &mut Config, line: usize, message: String| {
        config.errors.push(ParseError {
            file: file.to_path_buf(),
            line: Some(line),
            message,
        });
    };
    while *at < tokens.len() {
        let (token, line) = &tokens[*at];
        *at += 1;
        let name = match token {
            Token::Close if nested => return out,
            Token::Close => {
                error(config, *line, "unexpected \"}\"".into());
                continue;
            }
            Token::Semicolon => {
                error(config, *line, "unexpected \";\"".into());
                continue;
            }
            Token::Open => {
                error(config, *line, "unexpected \"{\"".into());
                continue;
            }
            Token::Word(w) => w.clone(),
        };
        let mut args = Vec::new();
        let mut ended = false;
        while *at < tokens.len() {
            let (token, at_line) = &tokens[*at];
            *at += 1;
            match token {
                Token::Word(w) => args.push(w.clone()),
                Token::Semicolon => {
                    ended = true;
                    if takes_block(&name, context) {
                        error(
                            config,
                            *at_line,
                            format!("directive \"{name}\" has no opening \"{{\""),
                        );
                    }
                    if name == "include" {
                        out.extend(include(&args, file, *line, prefix, depth, context, config));
                    } else {
                        out.push(Directive {
                            name: name.clone(),
                            args: std::mem::take(&mut args),
                            file: file.clone(),
                            line: *line,
                            block: None,
                        });
                    }
                    break;
                }
                Token::Open => {
                    ended = true;
                    if !takes_block(&name, context) {
                        error(
                            config,
                            *at_line,
                            format!("directive \"{name}\" is not terminated by \";\""),
                        );
                    }
                    let children = block(tokens, at, file, true, &name, prefix, depth, config);
                    out.push(Directive {
                        name: name.clone(),
                        args: std::mem::take(&mut args),
                        file: file.clone(),
                        line: *line,
                        block: Some(children),
                    });
                    break;
                }
                Token::Close => {
                    error(
                        config,
                        *at_line,
                        format!("directive \"{name}\" is not terminated by \";\""),
                    );
                    *at -= 1;
                    ended = true;
                    break;
                }
            }
        }
        if !ended {
            error(
                config,
                *line,
                format!("unexpected end of file, expecting \";\" or \"}}\" after \"{name}\""),
            );
        }
    }
    if nested {
        let last = tokens.last().map_or(1, |(_, l)| *l);
        error(
            config,
            last,
            "unexpected end of file, expecting \"}\"".into(),
        );
    }
    out
}

/// The directives of the files an `include` names.
fn include(
    args: &[String],
    file: &Arc<Path>,
    line: usize,
    prefix: &Path,
    depth: usize,
    context: &str,
    config: &mut Config,
) -> Vec<Directive> {
    let error = |config: &mut Config, message: String| {
        config.errors.push(ParseError {
            file: file.to_path_buf(),
            line: Some(line),
            message,
        });
    };
    let [pattern] = args else {
        error(
            config,
            "invalid number of arguments in \"include\" directive".into(),
        );
        return Vec::new();
    };
    if depth >= MAX_INCLUDE_DEPTH {
        error(
            config,
            format!("includes nest deeper than {MAX_INCLUDE_DEPTH}: an include loop?"),
        );
        return Vec::new();
    }
    let full = if Path::new(pattern).is_absolute() {
        PathBuf::from(pattern)
    } else {
        prefix.join(pattern)
    };
    let paths = if glob::has_magic(pattern) {
        glob::expand(&full)
    } else {
        if !full.exists() {
            error(
                config,
                format!(
                    "open() \"{}\" failed (2: No such file or directory)",
                    full.display()
                ),
            );
            return Vec::new();
        }
        vec![full]
    };
    let mut out = Vec::new();
    for path in paths {
        out.extend(read_file(&path, prefix, depth + 1, context, config).unwrap_or_default());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn includes_and_globs_are_followed_in_place_with_their_own_lines() {
        let dir = tempfile::tempdir().unwrap();
        let main = write(
            dir.path(),
            "nginx.conf",
            "user www-data;\nhttp {\n    include conf.d/*.conf;\n    include sites/none-*.conf;\n}\n",
        );
        write(dir.path(), "conf.d/b.conf", "server {\n  listen 80;\n}\n");
        write(
            dir.path(),
            "conf.d/a.conf",
            "\n\nupstream app { server 127.0.0.1:8080; }\n",
        );
        let config = parse(&main);
        assert!(config.errors.is_empty(), "{:?}", config.errors);
        assert_eq!(config.files.len(), 3);
        let http = &config.directives[1];
        let names: Vec<(&str, usize)> = http
            .children()
            .iter()
            .map(|d| (d.name.as_str(), d.line))
            .collect();
        assert_eq!(
            names,
            [("upstream", 3), ("server", 1)],
            "a.conf before b.conf"
        );
        assert!(http.children()[0].file.ends_with("conf.d/a.conf"));
        assert_eq!(http.children()[0].children()[0].args, ["127.0.0.1:8080"]);
    }

    #[test]
    fn errors_name_file_and_line_and_parsing_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let main = write(
            dir.path(),
            "nginx.conf",
            "events {}\nhttp {\n  include missing.conf;\n  server {\n    listen 80\n  }\n}\n}\n",
        );
        let config = parse(&main);
        let errors: Vec<String> = config.errors.iter().map(|e| e.to_string()).collect();
        let m = main.display();
        assert_eq!(
            errors,
            [
                format!(
                    "{m}:3: open() \"{}\" failed (2: No such file or directory)",
                    dir.path().join("missing.conf").display()
                ),
                format!("{m}:6: directive \"listen\" is not terminated by \";\""),
                format!("{m}:8: unexpected \"}}\""),
            ]
        );
        let unclosed = write(dir.path(), "open.conf", "http {\n  server {\n");
        let errors = parse(&unclosed).errors;
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].message.contains("expecting \"}\""));
    }

    /// A missing `;` before a block: nginx reads the next words as arguments and the `{` as
    /// that directive's block, and says the directive is not terminated, on the `{`'s line
    /// (as nginx 1.22 does).
    #[test]
    fn a_block_after_a_simple_directive_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let main = write(
            dir.path(),
            "nginx.conf",
            "http {\n  server {\n    listen 80\n    location / { }\n  }\n  server;\n}\n",
        );
        let errors: Vec<String> = parse(&main).errors.iter().map(|e| e.to_string()).collect();
        let m = main.display();
        assert_eq!(
            errors,
            [
                format!("{m}:4: directive \"listen\" is not terminated by \";\""),
                format!("{m}:6: directive \"server\" has no opening \"{{\""),
            ]
        );
    }

    #[test]
    fn an_include_loop_stops() {
        let dir = tempfile::tempdir().unwrap();
        let main = write(dir.path(), "nginx.conf", "include nginx.conf;\n");
        let config = parse(&main);
        assert!(config
            .errors
            .iter()
            .any(|e| e.message.contains("include loop")));
    }
}

//! A tiny flag parser in runc's (urfave-cli) style: `--flag value`,
//! `--flag=value`, `-f value`, single-dash long names, bool flags (also
//! `--flag=true|false`), flags before the positional arguments; `--` ends
//! the flags.  No clap: this binary is copied into a memfd on every
//! container start, so it stays small.

use super::Fail;

/// One flag: its names (without dashes, the first is canonical) and
/// whether it takes a value.
pub struct Flag {
    pub names: &'static [&'static str],
    pub value: bool,
}

/// A value-taking flag.
pub const fn value(names: &'static [&'static str]) -> Flag {
    Flag { names, value: true }
}

/// A bool flag.
pub const fn switch(names: &'static [&'static str]) -> Flag {
    Flag { names, value: false }
}

/// What was given: (canonical name, value) in order, and the positionals.
#[derive(Debug, Default)]
pub struct Parsed {
    pub values: Vec<(&'static str, String)>,
    pub positional: Vec<String>,
}

impl Parsed {
    /// The last value given for `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.iter().rev().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }

    /// Every value given for a repeatable flag.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.values.iter().filter(|(n, _)| *n == name).map(|(_, v)| v.as_str()).collect()
    }

    /// A bool flag: given without a value, or with `true`.
    pub fn is_set(&self, name: &str) -> bool {
        self.get(name).is_some_and(|v| v != "false")
    }

    /// Exactly one positional (the container id): `cmd` names the command
    /// in the error.
    pub fn one_id(&self, cmd: &str) -> Result<&str, Fail> {
        match self.positional.as_slice() {
            [id] => Ok(id.as_str()),
            [] => Err(Fail::new(format!("\"{cmd}\" requires a container id"))),
            _ => Err(Fail::new(format!("\"{cmd}\" requires exactly 1 argument, got {}", self.positional.len()))),
        }
    }
}

/// Parse `args` against `flags`.  With `stop_at_positional`, everything from
/// the first positional on is positional (urfave-cli's behaviour; `exec ID
/// cmd -x` passes `-x` to the command).
pub fn parse(args: &[String], flags: &[Flag], stop_at_positional: bool) -> Result<Parsed, Fail> {
    let mut out = Parsed::default();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if arg == "--" {
            out.positional.extend(args[i..].iter().cloned());
            break;
        }
        if !arg.starts_with('-') || arg == "-" {
            out.positional.push(arg.clone());
            if stop_at_positional {
                out.positional.extend(args[i..].iter().cloned());
                break;
            }
            continue;
        }
        let body = arg.trim_start_matches('-');
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v.to_owned())),
            None => (body, None),
        };
        let Some(flag) = flags.iter().find(|f| f.names.contains(&name)) else {
            return Err(Fail::new(format!("flag provided but not defined: -{name}")));
        };
        let canonical = flag.names[0];
        let value = if flag.value {
            match inline {
                Some(v) => v,
                None => {
                    let Some(v) = args.get(i) else {
                        return Err(Fail::new(format!("flag needs an argument: -{name}")));
                    };
                    i += 1;
                    v.clone()
                }
            }
        } else {
            match inline.as_deref() {
                None | Some("true") | Some("1") => "true".to_owned(),
                Some("false") | Some("0") => "false".to_owned(),
                Some(other) => return Err(Fail::new(format!("invalid boolean value {other:?} for -{name}"))),
            }
        };
        out.values.push((canonical, value));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLAGS: [Flag; 3] = [value(&["bundle", "b"]), switch(&["detach", "d"]), value(&["env", "e"])];

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn long_short_inline_and_single_dash_forms() {
        let p = parse(&strings(&["-b", "x", "--detach", "-e=A=1", "-env", "B=2", "id"]), &FLAGS, true).unwrap();
        assert_eq!(p.get("bundle"), Some("x"));
        assert!(p.is_set("detach"));
        assert_eq!(p.all("env"), ["A=1", "B=2"]);
        assert_eq!(p.positional, ["id"]);
    }

    #[test]
    fn positional_stops_flags_and_unknown_flags_are_errors() {
        let p = parse(&strings(&["id", "sh", "-c", "x"]), &FLAGS, true).unwrap();
        assert_eq!(p.positional, ["id", "sh", "-c", "x"]);
        assert!(parse(&strings(&["--nope"]), &FLAGS, true).is_err());
        assert!(parse(&strings(&["--bundle"]), &FLAGS, true).is_err());
        let p = parse(&strings(&["--detach=false", "--", "-x"]), &FLAGS, false).unwrap();
        assert!(!p.is_set("detach"));
        assert_eq!(p.positional, ["-x"]);
    }
}

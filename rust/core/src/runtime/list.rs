//! `state ID`, `list [--format table|json] [-q]`, `ps [--format table|json] ID`.

use std::io::Write;

use super::args;
use super::state::{self, Container};
use super::{Fail, Global, Result};

fn print(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes()).and_then(|()| out.flush()).map_err(|e| Fail::new(format!("write output: {e}")))
}

pub fn state_cmd(g: &Global, argv: &[String]) -> Result<()> {
    let p = args::parse(argv, &[], true)?;
    let c = Container::load(g, p.one_id("state")?)?;
    let st = c.oci_state(c.status());
    let text = serde_json::to_string_pretty(&st).map_err(|e| Fail::new(e.to_string()))?;
    print(&format!("{text}\n"))
}

fn format_flag(p: &args::Parsed) -> Result<bool> {
    match p.get("format") {
        None | Some("table") => Ok(false),
        Some("json") => Ok(true),
        Some(other) => Err(Fail::new(format!("invalid format option {other:?}"))),
    }
}

pub fn list_cmd(g: &Global, argv: &[String]) -> Result<()> {
    let p = args::parse(argv, &[args::value(&["format", "f"]), args::switch(&["quiet", "q"])], false)?;
    let json = format_flag(&p)?;
    let mut ids: Vec<String> = match std::fs::read_dir(&g.root) {
        Ok(rd) => rd.filter_map(|e| e.ok()).filter_map(|e| e.file_name().into_string().ok()).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(Fail::new(format!("read {}: {e}", g.root.display()))),
    };
    ids.sort();
    let containers: Vec<Container> = ids.iter().filter_map(|id| Container::load(g, id).ok()).collect();
    if p.is_set("quiet") {
        let text: String = containers.iter().map(|c| format!("{}\n", c.saved.id)).collect();
        return print(&text);
    }
    if json {
        let states: Vec<_> = containers.iter().map(|c| c.oci_state(c.status())).collect();
        let text = serde_json::to_string(&states).map_err(|e| Fail::new(e.to_string()))?;
        return print(&format!("{text}\n"));
    }
    let mut rows = vec![["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"].map(str::to_owned)];
    for c in &containers {
        let status = c.status();
        rows.push([
            c.saved.id.clone(),
            c.shown_pid(status).to_string(),
            status.name().to_owned(),
            c.saved.bundle.clone(),
            c.saved.created.clone(),
            "root".to_owned(),
        ]);
    }
    let mut widths = [0usize; 6];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut text = String::new();
    for row in &rows {
        let cells: Vec<String> = row.iter().zip(widths).map(|(c, w)| format!("{c:<w$}")).collect();
        text.push_str(cells.join("   ").trim_end());
        text.push('\n');
    }
    print(&text)
}

pub fn ps_cmd(g: &Global, argv: &[String]) -> Result<()> {
    let p = args::parse(argv, &[args::value(&["format", "f"])], true)?;
    let json = format_flag(&p)?;
    let Some((id, ps_args)) = p.positional.split_first() else {
        return Err(Fail::new("\"ps\" requires a container id"));
    };
    let ps_args: Vec<&String> = ps_args.iter().filter(|a| a.as_str() != "--").collect();
    let (c, _lock) = state::load_locked(g, id)?;
    let pids = c.pids();
    if json {
        let text = serde_json::to_string(&pids).map_err(|e| Fail::new(e.to_string()))?;
        return print(&format!("{text}\n"));
    }
    let args: Vec<&str> = if ps_args.is_empty() { vec!["-ef"] } else { ps_args.iter().map(|s| s.as_str()).collect() };
    let out = std::process::Command::new("ps").args(&args).output().map_err(|e| Fail::new(format!("run ps: {e}")))?;
    if !out.status.success() {
        return Err(Fail::new(format!("ps: {}", String::from_utf8_lossy(&out.stderr).trim())));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or("");
    let Some(col) = header.split_whitespace().position(|h| h == "PID") else {
        return Err(Fail::new("ps output has no PID column"));
    };
    let mut shown = format!("{header}\n");
    for line in lines {
        if line.split_whitespace().nth(col).and_then(|p| p.parse::<i32>().ok()).is_some_and(|p| pids.contains(&p)) {
            shown.push_str(line);
            shown.push('\n');
        }
    }
    print(&shown)
}

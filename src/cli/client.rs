//! Client commands: talk to a running daemon over the HTTP API.

use std::io::Write;

use serde_json::{json, Value};

use super::ServerArgs;
use crate::error::{Error, Result};
use crate::state::{HostStatus, RunStatus};

struct Client {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Client {
    fn new(args: &ServerArgs) -> Result<Client> {
        let token = args
            .token
            .clone()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Error::Usage("no token: pass --token or set TANDEM_TOKEN".into()))?;
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|e| Error::Usage(format!("http client: {e}")))?;
        Ok(Client {
            base: args.server.trim_end_matches('/').to_string(),
            token,
            http,
        })
    }

    fn fail(&self, e: impl std::fmt::Display) -> Error {
        Error::Client {
            url: self.base.clone(),
            message: e.to_string(),
        }
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response> {
        let resp = req
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| self.fail(e))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        Err(Error::Api {
            status,
            code: body["error"]["code"]
                .as_str()
                .unwrap_or("unknown")
                .to_string(),
            message: body["error"]["message"]
                .as_str()
                .unwrap_or("the server gave no reason")
                .to_string(),
        })
    }

    async fn get(&self, path: &str) -> Result<Value> {
        let resp = self
            .send(self.http.get(format!("{}{path}", self.base)))
            .await?;
        resp.json().await.map_err(|e| self.fail(e))
    }

    async fn post(&self, path: &str, body: Value) -> Result<Value> {
        let resp = self
            .send(self.http.post(format!("{}{path}", self.base)).json(&body))
            .await?;
        resp.json().await.map_err(|e| self.fail(e))
    }

    /// Follows a run's log (server-sent events, lines in batches), handing each line to
    /// `on_line` as the object the log API pages (`{id, ts, host, stream, line}`), until
    /// the run ends; returns the final run.
    async fn follow(&self, id: &str, on_line: &mut dyn FnMut(&Value)) -> Result<Value> {
        let mut resp = self
            .send(self.http.get(format!(
                "{}/api/v1/runs/{id}/log?follow=1&batch=1",
                self.base
            )))
            .await?;
        let mut buf = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| self.fail(e))? {
            buf.extend_from_slice(&chunk);
            for event in take_events(&mut buf) {
                match event.kind.as_str() {
                    "lines" => {
                        let batch: LineBatch =
                            serde_json::from_str(&event.data).map_err(|e| self.fail(e))?;
                        for (id, line) in (batch.id..).zip(batch.lines) {
                            on_line(&json!({"id": id, "ts": batch.ts, "host": batch.host,
                                "stream": batch.stream, "line": line}));
                        }
                    }
                    "line" => on_line(&serde_json::from_str(&event.data).unwrap_or(Value::Null)),
                    "end" => return serde_json::from_str(&event.data).map_err(|e| self.fail(e)),
                    _ => {}
                }
            }
        }
        Err(self.fail("the log stream ended before the run did"))
    }
}

/// A `lines` event of the log stream: consecutive lines of one host's stream, numbered
/// from `id`.
#[derive(serde::Deserialize)]
struct LineBatch {
    id: i64,
    ts: String,
    host: Option<String>,
    stream: String,
    lines: Vec<String>,
}

/// One server-sent event: its type (`message` when it names none) and its data lines.
#[derive(Debug, PartialEq)]
struct SseEvent {
    kind: String,
    data: String,
}

/// Takes the complete events out of `buf`, leaving a partial one. Bytes are decoded per
/// event, so a character split between two reads of the body stays whole; comments
/// (keep-alives) are skipped.
fn take_events(buf: &mut Vec<u8>) -> Vec<SseEvent> {
    let mut out = Vec::new();
    let mut start = 0;
    while let Some(end) = memchr::memmem::find(&buf[start..], b"\n\n") {
        let raw = String::from_utf8_lossy(&buf[start..start + end]);
        start += end + 2;
        let mut kind = None;
        let mut data: Option<String> = None;
        for line in raw.lines() {
            if let Some(k) = line.strip_prefix("event:") {
                kind = Some(k.trim().to_string());
            } else if let Some(d) = line.strip_prefix("data:") {
                let d = d.strip_prefix(' ').unwrap_or(d);
                match &mut data {
                    Some(all) => {
                        all.push('\n');
                        all.push_str(d);
                    }
                    None => data = Some(d.to_string()),
                }
            }
        }
        if kind.is_some() || data.is_some() {
            out.push(SseEvent {
                kind: kind.unwrap_or_else(|| "message".into()),
                data: data.unwrap_or_default(),
            });
        }
    }
    buf.drain(..start);
    out
}

/// A live progress bar for `run --wait` on a terminal: hosts done out of all, with counts
/// per outcome; log lines scroll above it.
struct Progress {
    bar: indicatif::ProgressBar,
    counts: std::cell::RefCell<std::collections::BTreeMap<String, usize>>,
}

impl Progress {
    fn new(hosts: usize) -> Progress {
        let bar = indicatif::ProgressBar::new(hosts as u64);
        if let Ok(style) =
            indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} hosts {elapsed} {msg}")
        {
            bar.set_style(style);
        }
        Progress {
            bar,
            counts: Default::default(),
        }
    }

    fn line(&self, line: &Value) {
        let text = line["line"].as_str().unwrap_or_default();
        let host = line["host"].as_str();
        // The daemon reports each host's end as an event line `host NAME STATUS[: why]`.
        if let (Some(h), Some("event")) = (host, line["stream"].as_str()) {
            if let Some(rest) = text.strip_prefix(&format!("host {h} ")) {
                let status = rest.split(':').next().unwrap_or(rest).to_string();
                if status != HostStatus::Running.as_str() {
                    self.bar.inc(1);
                    let mut counts = self.counts.borrow_mut();
                    *counts.entry(status).or_default() += 1;
                    let msg: Vec<String> = counts.iter().map(|(k, v)| format!("{k} {v}")).collect();
                    self.bar.set_message(msg.join(", "));
                }
            }
        }
        let prefix = host.map(|h| format!("[{h}] ")).unwrap_or_default();
        self.bar.println(format!("{prefix}{text}"));
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

fn print_line(line: &Value, json: bool) {
    let host = line["host"]
        .as_str()
        .map(|h| format!("[{h}] "))
        .unwrap_or_default();
    let stream = match line["stream"].as_str() {
        Some("stderr") => "! ",
        _ => "",
    };
    let text = format!(
        "{host}{stream}{}",
        line["line"].as_str().unwrap_or_default()
    );
    // With --json, stdout carries only the JSON result.
    if json {
        errln!("{text}");
    } else {
        outln!("{text}");
    }
}

/// Exit status for a finished run (SPEC §6).
fn outcome(run: &Value) -> Result<()> {
    let st = run["status"].as_str().unwrap_or_default();
    if st == RunStatus::Succeeded.as_str() {
        Ok(())
    } else {
        Err(Error::RunUnsuccessful {
            id: run["id"].as_str().unwrap_or_default().to_string(),
            status: st.to_string(),
            reason: run["error"].as_str().map(str::to_string),
        })
    }
}

/// What `tandem run` asks the daemon to start.
#[derive(Debug)]
pub struct RunRequest<'a> {
    pub runbook: &'a str,
    pub params: &'a [String],
    pub break_glass: bool,
    pub reason: Option<String>,
    /// Hosts or `tag:NAME` to narrow the run to.
    pub limit: &'a [String],
    /// `--ref`: carried through the run (checked by the daemon).
    pub reference: Option<String>,
}

pub async fn run(server: &ServerArgs, req: RunRequest<'_>, wait: bool, json: bool) -> Result<()> {
    let client = Client::new(server)?;
    let params = super::parse_params(req.params)?;
    let mut body = json!({"runbook": req.runbook, "params": params, "break_glass": req.break_glass,
                          "reason": req.reason, "limit": req.limit});
    if let Some(r) = req.reference {
        body["ref"] = json!(r);
    }
    let run = client.post("/api/v1/runs", body).await?;
    let id = run["id"].as_str().unwrap_or_default().to_string();
    if !wait {
        print_run_brief(&run, json);
        if run["status"] == RunStatus::AwaitingApproval.as_str() {
            return Err(Error::AwaitingApproval { id });
        }
        return Ok(());
    }
    if !json {
        outln!("run {id} {}", run["status"].as_str().unwrap_or_default());
    }
    let hosts = run["hosts"].as_array().map_or(0, Vec::len);
    let done = if !json && hosts > 0 && std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        let progress = Progress::new(hosts);
        let done = client.follow(&id, &mut |l| progress.line(l)).await;
        progress.finish();
        done?
    } else {
        client.follow(&id, &mut |l| print_line(l, json)).await?
    };
    if json {
        print_json(&done);
    } else {
        print_hosts(&done);
        outln!("run {id} {}", done["status"].as_str().unwrap_or_default());
    }
    outcome(&done)
}

fn print_run_brief(run: &Value, json: bool) {
    if json {
        print_json(&run);
    } else {
        outln!(
            "run {} {}",
            run["id"].as_str().unwrap_or_default(),
            run["status"].as_str().unwrap_or_default()
        );
    }
}

/// Approve or deny. The decision is bound to the digest the approver saw: `--digest`, or
/// else the digest of the run as fetched and printed just before deciding.
pub async fn decide(
    server: &ServerArgs,
    id: &str,
    verb: &str,
    mut body: Value,
    digest: Option<String>,
    json: bool,
) -> Result<()> {
    let client = Client::new(server)?;
    let digest = match digest {
        Some(d) => d,
        None => {
            let run = client.get(&format!("/api/v1/runs/{id}")).await?;
            if !json {
                errln!(
                    "{verb} run {id}: {} {} params {} targets [{}] digest {}",
                    run["runbook"].as_str().unwrap_or_default(),
                    run["version"]
                        .as_str()
                        .unwrap_or_default()
                        .chars()
                        .take(12)
                        .collect::<String>(),
                    run["plan"]["params"],
                    run["hosts"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|h| h["host"].as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    run["digest"].as_str().unwrap_or_default()
                );
            }
            run["digest"].as_str().unwrap_or_default().to_string()
        }
    };
    body["digest"] = Value::String(digest);
    let run = client
        .post(&format!("/api/v1/runs/{id}/{verb}"), body)
        .await?;
    print_run_brief(&run, json);
    Ok(())
}

pub async fn review(server: &ServerArgs, id: &str, comment: &str, json: bool) -> Result<()> {
    let client = Client::new(server)?;
    let run = client
        .post(
            &format!("/api/v1/runs/{id}/review"),
            json!({"comment": comment}),
        )
        .await?;
    print_run_brief(&run, json);
    Ok(())
}

/// `audit export --server`: the caller's party's view of the audit log (records of other
/// parties redacted), page by page, as JSON lines that `audit verify --file` checks.
pub async fn audit_export(server: &ServerArgs) -> Result<()> {
    const PAGE: usize = 10_000;
    let client = Client::new(server)?;
    let mut after = 0u64;
    let stdout = std::io::stdout();
    loop {
        let page = client
            .get(&format!("/api/v1/audit?after={after}&limit={PAGE}"))
            .await?;
        let entries = page
            .as_array()
            .ok_or_else(|| client.fail("the audit log is not a list"))?;
        let mut out = stdout.lock();
        for e in entries {
            after = e["seq"]
                .as_u64()
                .filter(|s| *s > after)
                .ok_or_else(|| client.fail("an audit record without a rising seq"))?;
            writeln!(out, "{e}").map_err(|e| Error::io("writing the export", e))?;
        }
        out.flush()
            .map_err(|e| Error::io("writing the export", e))?;
        if entries.len() < PAGE {
            return Ok(());
        }
    }
}

/// Prints a list of runs from `path` as the `runs` table.
pub async fn list(server: &ServerArgs, path: &str, json: bool) -> Result<()> {
    let client = Client::new(server)?;
    let runs = client.get(path).await?;
    print_runs(&runs, json);
    Ok(())
}

pub async fn cancel(server: &ServerArgs, id: &str, json: bool) -> Result<()> {
    let client = Client::new(server)?;
    let run = client
        .post(&format!("/api/v1/runs/{id}/cancel"), json!({}))
        .await?;
    print_run_brief(&run, json);
    Ok(())
}

pub async fn runs(
    server: &ServerArgs,
    status: Option<&str>,
    reference: Option<&str>,
    json: bool,
) -> Result<()> {
    let client = Client::new(server)?;
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    if let Some(s) = status {
        query.append_pair("status", s);
    }
    if let Some(r) = reference {
        query.append_pair("ref", r);
    }
    let query = query.finish();
    let path = if query.is_empty() {
        "/api/v1/runs".to_string()
    } else {
        format!("/api/v1/runs?{query}")
    };
    let runs = client.get(&path).await?;
    print_runs(&runs, json);
    Ok(())
}

fn print_runs(runs: &Value, json: bool) {
    if json {
        print_json(&runs);
        return;
    }
    let mut out = format!(
        "{:<16}  {:<17}  {:<24}  {:<20}  {}\n",
        "ID", "STATUS", "RUNBOOK", "INITIATOR", "CREATED"
    );
    for r in runs.as_array().into_iter().flatten() {
        out.push_str(&format!(
            "{:<16}  {:<17}  {:<24}  {:<20}  {}\n",
            r["id"].as_str().unwrap_or_default(),
            r["status"].as_str().unwrap_or_default(),
            r["runbook"].as_str().unwrap_or_default(),
            format!(
                "{} ({})",
                r["initiator"]["user"].as_str().unwrap_or_default(),
                r["initiator"]["party"].as_str().unwrap_or_default()
            ),
            r["created_at"].as_str().unwrap_or_default()
        ));
    }
    out!("{out}");
}

pub async fn show(server: &ServerArgs, id: &str, json: bool) -> Result<()> {
    let client = Client::new(server)?;
    let r = client.get(&format!("/api/v1/runs/{id}")).await?;
    if json {
        print_json(&r);
        return Ok(());
    }
    let s = |v: &Value| v.as_str().unwrap_or("-").to_string();
    let mut out = String::new();
    out.push_str(&format!("run:        {}\n", s(&r["id"])));
    out.push_str(&format!(
        "runbook:    {} (version {})\n",
        s(&r["runbook"]),
        s(&r["version"]).chars().take(12).collect::<String>()
    ));
    out.push_str(&format!("status:     {}\n", s(&r["status"])));
    if let Some(reference) = r["ref"].as_str() {
        out.push_str(&format!("ref:        {reference}\n"));
    }
    out.push_str(&format!(
        "initiator:  {} ({})\n",
        s(&r["initiator"]["user"]),
        s(&r["initiator"]["party"])
    ));
    out.push_str(&format!("created:    {}\n", s(&r["created_at"])));
    out.push_str(&format!("started:    {}\n", s(&r["started_at"])));
    out.push_str(&format!("finished:   {}\n", s(&r["finished_at"])));
    out.push_str(&format!("params:     {}\n", r["plan"]["params"]));
    out.push_str(&format!("scope:      {}\n", r["plan"]["scope"]));
    for a in r["plan"]["approvals"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "approval:   {} x{}\n",
            s(&a["party"]),
            a["quorum"]
        ));
    }
    for g in r["gates"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "gate {}:     {} ({}), expires {}\n",
            g["gate"],
            s(&g["status"]),
            s(&g["reason"]),
            s(&g["expires_at"])
        ));
        for d in g["decisions"].as_array().into_iter().flatten() {
            out.push_str(&format!(
                "            {} ({}) {}{}\n",
                s(&d["user"]),
                s(&d["party"]),
                s(&d["decision"]),
                d["comment"]
                    .as_str()
                    .map(|c| format!(": {c}"))
                    .unwrap_or_default()
            ));
        }
    }
    if r["break_glass"] == true {
        out.push_str(&format!("break-glass: {}\n", s(&r["reason"])));
        out.push_str(&format!("review:     {}\n", s(&r["review"]["status"])));
    }
    if let Some(p) = r["parent_run"].as_str() {
        out.push_str(&format!("parent run: {p} (this run is its follow-up)\n"));
    }
    for c in r["children"].as_array().into_iter().flatten() {
        out.push_str(&format!("follow-up:  {}\n", s(c)));
    }
    if let Some(limit) = r["plan"]["limit"].as_array() {
        let items: Vec<String> = limit.iter().map(s).collect();
        out.push_str(&format!("limit:      {}\n", items.join(",")));
    }
    let alert = &r["plan"]["trigger"];
    if alert.is_object() {
        out.push_str(&format!(
            "alert:      {} ({}) via trigger {}\n",
            s(&alert["alertname"]),
            s(&alert["status"]),
            s(&alert["trigger"])
        ));
        if alert["summary"].is_string() {
            out.push_str(&format!("summary:    {}\n", s(&alert["summary"])));
        }
        if alert["ref"].is_string() {
            out.push_str(&format!("ref:        {}\n", s(&alert["ref"])));
        }
    }
    out.push_str(&format!("digest:     {}\n", s(&r["digest"])));
    if let Some(e) = r["error"].as_str() {
        out.push_str(&format!("error:      {e}\n"));
    }
    out!("{out}");
    print_hosts(&r);
    Ok(())
}

fn print_hosts(r: &Value) {
    let hosts = r["hosts"].as_array().cloned().unwrap_or_default();
    if hosts.is_empty() {
        return;
    }
    let mut out = format!(
        "{:<20}  {:<12}  {:>4}  {:>9}  {}\n",
        "HOST", "STATUS", "EXIT", "TIME", "ERROR"
    );
    for h in hosts {
        out.push_str(&format!(
            "{:<20}  {:<12}  {:>4}  {:>9}  {}\n",
            h["host"].as_str().unwrap_or_default(),
            h["status"].as_str().unwrap_or_default(),
            h["exit_code"]
                .as_i64()
                .map(|c| c.to_string())
                .unwrap_or_else(|| "-".into()),
            h["duration_ms"]
                .as_i64()
                .map(|d| format!("{:.2}s", d as f64 / 1000.0))
                .unwrap_or_else(|| "-".into()),
            h["error"].as_str().unwrap_or("")
        ));
    }
    out!("{out}");
    let _ = std::io::stdout().flush();
}

pub async fn logs(server: &ServerArgs, id: &str, follow: bool, json: bool) -> Result<()> {
    let client = Client::new(server)?;
    if follow {
        let run = client.follow(id, &mut |l| print_line(l, json)).await?;
        if json {
            print_json(&run);
        }
        return Ok(());
    }
    // Page by line number, so a log of millions of lines is never held whole.
    let mut after = 0;
    let mut first = true;
    if json {
        outln!("[");
    }
    loop {
        let page = client
            .get(&format!(
                "/api/v1/runs/{id}/log?after={after}&limit={LOG_PAGE}"
            ))
            .await?;
        let lines = page.as_array().cloned().unwrap_or_default();
        for l in &lines {
            if json {
                let sep = if first { "" } else { "," };
                outln!("{sep}{}", serde_json::to_string(l).unwrap_or_default());
            } else {
                print_line(l, false);
            }
            first = false;
            after = l["id"].as_i64().unwrap_or(after);
        }
        if lines.len() < LOG_PAGE {
            break;
        }
    }
    if json {
        outln!("]");
    }
    Ok(())
}

/// Lines asked for per request by `logs`.
const LOG_PAGE: usize = 10_000;

/// `logs --raw`: the stored bytes, written to stdout as they arrive.
pub async fn raw_logs(
    server: &ServerArgs,
    id: &str,
    host: Option<&str>,
    stream: Option<&str>,
) -> Result<()> {
    let client = Client::new(server)?;
    let mut query = vec![("raw", "1")];
    query.extend(host.map(|h| ("host", h)));
    query.extend(stream.map(|s| ("stream", s)));
    let mut resp = client
        .send(
            client
                .http
                .get(format!("{}/api/v1/runs/{id}/log", client.base))
                .query(&query),
        )
        .await?;
    let mut stdout = std::io::stdout().lock();
    while let Some(chunk) = resp.chunk().await.map_err(|e| client.fail(e))? {
        if stdout.write_all(&chunk).is_err() {
            // stdout closed (`| head`): stop quietly, like the other commands.
            return Ok(());
        }
    }
    let _ = stdout.flush();
    Ok(())
}

pub async fn schedules(server: &ServerArgs, json: bool) -> Result<()> {
    let client = Client::new(server)?;
    let list = client.get("/api/v1/schedules").await?;
    if json {
        print_json(&list);
        return Ok(());
    }
    let mut out = format!(
        "{:<24}  {:<20}  {:<20}  {:<9}  {}\n",
        "RUNBOOK", "CRON", "NEXT (UTC)", "APPROVED", "LAST"
    );
    for s in list.as_array().into_iter().flatten() {
        out.push_str(&format!(
            "{:<24}  {:<20}  {:<20}  {:<9}  {}\n",
            s["runbook"].as_str().unwrap_or_default(),
            s["cron"]
                .as_str()
                .or(s["rrule"].as_str())
                .unwrap_or_default(),
            s["next"][0]["utc"].as_str().unwrap_or("-"),
            s["next_slot_approved"],
            s["last"]["status"].as_str().unwrap_or("-")
        ));
    }
    out!("{out}");
    Ok(())
}

pub async fn standing(
    server: &ServerArgs,
    runbook: &str,
    period: &str,
    digest: Option<String>,
    comment: Option<String>,
    json: bool,
) -> Result<()> {
    let client = Client::new(server)?;
    let granted = client
        .post(
            &format!("/api/v1/schedules/{runbook}/standing"),
            json!({"for": period, "digest": digest, "comment": comment}),
        )
        .await?;
    if json {
        print_json(&granted);
    } else {
        outln!(
            "standing approval of {runbook} by {} ({}) until {}",
            granted["user"].as_str().unwrap_or_default(),
            granted["party"].as_str().unwrap_or_default(),
            granted["until"].as_str().unwrap_or_default()
        );
    }
    Ok(())
}

/// Prints the hosts named by `key` in a freeze or unfreeze answer.
fn print_hosts_of(answer: &Value, key: &str, what: &str) {
    for h in answer[key].as_array().into_iter().flatten() {
        outln!("{what}: {}", h.as_str().unwrap_or_default());
    }
}

pub async fn freeze(
    server: &ServerArgs,
    targets: &[String],
    reason: &str,
    json: bool,
) -> Result<()> {
    let client = Client::new(server)?;
    let answer = client
        .post(
            "/api/v1/freezes",
            json!({"targets": targets, "reason": reason}),
        )
        .await?;
    if json {
        print_json(&answer);
    } else {
        print_hosts_of(&answer, "frozen", "frozen");
        print_hosts_of(&answer, "already_frozen", "already frozen");
    }
    Ok(())
}

pub async fn unfreeze(server: &ServerArgs, targets: &[String], json: bool) -> Result<()> {
    let client = Client::new(server)?;
    let answer = client
        .post("/api/v1/freezes/lift", json!({"targets": targets}))
        .await?;
    if json {
        print_json(&answer);
    } else {
        print_hosts_of(&answer, "unfrozen", "unfrozen");
        print_hosts_of(&answer, "not_frozen", "was not frozen");
    }
    Ok(())
}

pub async fn frozen(server: &ServerArgs, json: bool) -> Result<()> {
    let client = Client::new(server)?;
    let list = client.get("/api/v1/freezes").await?;
    if json {
        print_json(&list);
        return Ok(());
    }
    let mut out = format!(
        "{:<20}  {:<24}  {:<12}  {}\n",
        "HOST", "SINCE", "BY", "REASON"
    );
    for f in list.as_array().into_iter().flatten() {
        out.push_str(&format!(
            "{:<20}  {:<24}  {:<12}  {}\n",
            f["host"].as_str().unwrap_or_default(),
            f["frozen_at"].as_str().unwrap_or_default(),
            f["frozen_by"].as_str().unwrap_or_default(),
            f["reason"].as_str().unwrap_or_default()
        ));
    }
    out!("{out}");
    Ok(())
}

/// Prints a JSON value for `--json`, pretty, on stdout.
fn print_json(value: &impl serde::Serialize) {
    outln!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_taken_whole_and_a_split_character_stays_whole() {
        let stream = ": keep-alive\n\nevent: lines\ndata: {\"lines\":[\"h\u{e9}\"]}\n\nevent: end\ndata: {}\n\n";
        let bytes = stream.as_bytes();
        // Cut inside the two bytes of "é", and inside the last event.
        let cut = bytes.iter().position(|&b| b == 0xc3).unwrap() + 1;
        let mut buf = bytes[..cut].to_vec();
        assert_eq!(take_events(&mut buf), vec![]);
        buf.extend_from_slice(&bytes[cut..bytes.len() - 3]);
        let first = take_events(&mut buf);
        assert_eq!(
            first,
            vec![SseEvent {
                kind: "lines".into(),
                data: "{\"lines\":[\"h\u{e9}\"]}".into()
            }]
        );
        buf.extend_from_slice(&bytes[bytes.len() - 3..]);
        let rest = take_events(&mut buf);
        assert_eq!(rest.len(), 1);
        assert_eq!(
            (rest[0].kind.as_str(), rest[0].data.as_str()),
            ("end", "{}")
        );
        assert!(buf.is_empty());
    }
}

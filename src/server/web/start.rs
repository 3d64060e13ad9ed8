//! Start a run (`/start`, `/start/{runbook}`): the runbooks I may start (rule 1), a form
//! made from the runbook's typed params, a preview of the plan in words with its digest and
//! who must approve, then Start, bound to the previewed digest: if the plan changed in
//! between, nothing starts and the new plan is shown.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Extension, Form, Router};
use serde_json::{Map, Value};

use super::{blocking, esc, page, posted_by, urlencode, Sessions, Signed};
use crate::config::User;
use crate::run::words::{count, plan_in_words};
use crate::run::{check_ref, App, RunError, StartRequest};
use crate::runbook::plan::Plan;
use crate::runbook::{ParamType, Runbook};

pub(super) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/start", get(list_page))
        .route("/start/{runbook}", get(form_page).post(submit))
}

async fn list_page(State(app): State<Arc<App>>, Signed { user, .. }: Signed) -> Response {
    let mut runbooks = app.startable_runbooks(&user);
    runbooks.sort_by(|a, b| a.name.cmp(&b.name));
    let mut b = String::new();
    if runbooks.is_empty() {
        b.push_str("<p id=\"none\">There is no runbook your party and roles may start.</p>");
    } else {
        let _ = write!(
            b,
            "<p>{} you may start. Pick one to fill in its parameters and see, before anything runs, what it will do and who must approve.</p>\
<table id=\"runbooks\" aria-label=\"Runbooks you may start\"><tr><th>Runbook</th><th>What it does</th><th>Owner</th><th>Break-glass</th></tr>",
            plural(runbooks.len(), "runbook", "runbooks")
        );
        for rb in &runbooks {
            let _ = write!(
                b,
                "<tr><td><a class=\"runbook\" href=\"/start/{}\">{}</a></td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&urlencode(&rb.name)),
                esc(&rb.name),
                esc(&rb.description),
                esc(&rb.owner),
                if rb.emergency { "allowed" } else { "no" }
            );
        }
        b.push_str("</table>");
    }
    page(StatusCode::OK, "Start a run", &b)
}

/// What the form sends: `p.NAME` per param, and the run's options.
#[derive(Default, Clone)]
struct Fields {
    csrf: String,
    params: BTreeMap<String, String>,
    reference: String,
    limit: String,
    break_glass: bool,
    reason: String,
    /// The digest of the preview the Start button belongs to.
    digest: String,
    /// `preview` or `start`.
    action: String,
}

impl Fields {
    fn from_pairs(pairs: Vec<(String, String)>) -> Fields {
        let mut f = Fields::default();
        for (k, v) in pairs {
            match k.as_str() {
                "csrf" => f.csrf = v,
                "ref" => f.reference = v,
                "limit" => f.limit = v,
                "break_glass" => f.break_glass = v == "on",
                "reason" => f.reason = v,
                "digest" => f.digest = v,
                "action" => f.action = v,
                _ => {
                    if let Some(name) = k.strip_prefix("p.") {
                        f.params.insert(name.to_string(), v);
                    }
                }
            }
        }
        f
    }

    /// The form's values as a start request; an empty field takes the param's default.
    fn request(&self, rb: &Runbook, digest: Option<String>) -> StartRequest {
        let params: Map<String, Value> = self
            .params
            .iter()
            .filter(|(name, v)| rb.params.contains_key(*name) && !v.trim().is_empty())
            .map(|(name, v)| (name.clone(), Value::String(v.trim().to_string())))
            .collect();
        let limit = self
            .limit
            .split([',', ' '])
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        let reference = Some(self.reference.trim())
            .filter(|r| !r.is_empty())
            .map(str::to_string);
        StartRequest {
            runbook: rb.name.clone(),
            params,
            break_glass: self.break_glass,
            reason: self
                .break_glass
                .then(|| self.reason.trim().to_string())
                .filter(|r| !r.is_empty()),
            limit,
            trigger: None,
            reference,
            digest,
        }
    }

    /// The message beside each field the engine's own checks refuse: each param's type
    /// (the conversion the API applies), a param with no default left empty, the reference,
    /// a break-glass start without its reason.
    fn field_errors(&self, rb: &Runbook) -> Vec<(String, String)> {
        let mut errors = Vec::new();
        for (name, spec) in &rb.params {
            let v = self.params.get(name).map(|v| v.trim()).unwrap_or_default();
            if v.is_empty() {
                if spec.default.is_none() {
                    errors.push((
                        format!("p.{name}"),
                        "required: this parameter has no default".to_string(),
                    ));
                }
                continue;
            }
            if let Err(e) = spec.kind.coerce(&Value::String(v.to_string())) {
                errors.push((format!("p.{name}"), e));
            }
        }
        if !self.reference.trim().is_empty() {
            if let Err(e) = check_ref(self.reference.trim()) {
                errors.push(("ref".into(), e));
            }
        }
        if self.break_glass && self.reason.trim().is_empty() {
            errors.push((
                "reason".into(),
                "a break-glass start needs a reason".to_string(),
            ));
        }
        errors
    }
}

/// Runbook `name` if `user` may start it (rule 1, the API's check); a runbook the user may
/// not start is not offered.
fn runbook_for(app: &App, user: &User, name: &str) -> Option<Runbook> {
    app.startable_runbooks(user)
        .into_iter()
        .find(|rb| rb.name == name)
}

fn no_runbook(name: &str) -> Response {
    super::error_page(&RunError::UnknownRunbook(name.to_string()))
}

async fn form_page(
    State(app): State<Arc<App>>,
    Signed { user, csrf }: Signed,
    Path(name): Path<String>,
) -> Response {
    let Some(rb) = runbook_for(&app, &user, &name) else {
        return no_runbook(&name);
    };
    let fields = Fields {
        csrf,
        ..Fields::default()
    };
    page(
        StatusCode::OK,
        &format!("Start {}", rb.name),
        &form_html(&rb, &fields, &[], None),
    )
}

async fn submit(
    State(app): State<Arc<App>>,
    Extension(sessions): Extension<Arc<Sessions>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    let fields = Fields::from_pairs(pairs);
    let back = format!("/start/{}", urlencode(&name));
    let user = match posted_by(&app, &sessions, &headers, &fields.csrf, &back) {
        Ok(u) => u,
        Err(r) => return *r,
    };
    let Some(rb) = runbook_for(&app, &user, &name) else {
        return no_runbook(&name);
    };
    let title = format!("Start {}", rb.name);
    let errors = fields.field_errors(&rb);
    if !errors.is_empty() {
        return page(
            StatusCode::UNPROCESSABLE_ENTITY,
            &title,
            &form_html(&rb, &fields, &errors, None),
        );
    }
    let starting = fields.action == "start" && !fields.digest.is_empty();
    if starting {
        let req = fields.request(&rb, Some(fields.digest.clone()));
        let (a, u) = (app.clone(), user.clone());
        // The outcome itself, so a refusal can be shown with the form.
        let started = blocking(move || Ok(a.submit(&u, req))).await;
        match started {
            Ok(Ok(run)) => {
                return Redirect::to(&format!("/runs/{}", urlencode(&run.id))).into_response()
            }
            // Refused by the engine: say why above the form, with the plan as it is now.
            Ok(Err(
                e @ (RunError::Forbidden(_) | RunError::Invalid(_) | RunError::Conflict(_)),
            )) => return preview_page(&app, &user, &rb, &fields, Some(&e.to_string())).await,
            Ok(Err(e)) => return super::error_page(&e),
            Err(r) => return r,
        }
    }
    preview_page(&app, &user, &rb, &fields, None).await
}

/// The form with the preview of its plan under it, or with the engine's refusal.
async fn preview_page(
    app: &Arc<App>,
    user: &User,
    rb: &Runbook,
    fields: &Fields,
    refused: Option<&str>,
) -> Response {
    let title = format!("Start {}", rb.name);
    let req = fields.request(rb, None);
    let (a, u) = (app.clone(), user.clone());
    let previewed = blocking(move || Ok(a.preview(&u, &req))).await;
    let plan = match previewed {
        Ok(Ok(plan)) => plan,
        Ok(Err(e @ (RunError::Forbidden(_) | RunError::Invalid(_) | RunError::Conflict(_)))) => {
            let mut f = fields.clone();
            f.digest.clear();
            let message = match refused {
                Some(r) => format!("{r} {e}"),
                None => e.to_string(),
            };
            let mut body = error_html(&message);
            body.push_str(&form_html(rb, &f, &[], None));
            return page(StatusCode::UNPROCESSABLE_ENTITY, &title, &body);
        }
        Ok(Err(e)) => return super::error_page(&e),
        Err(r) => return r,
    };
    let mut body = refused.map(error_html).unwrap_or_default();
    let frozen: Vec<&str> = plan
        .targets
        .iter()
        .map(|t| t.name.as_str())
        .filter(|h| app.is_frozen(h))
        .collect();
    body.push_str(&form_html(rb, fields, &[], Some((&plan, &frozen))));
    let status = if refused.is_some() {
        StatusCode::CONFLICT
    } else {
        StatusCode::OK
    };
    page(status, &title, &body)
}

fn error_html(message: &str) -> String {
    format!(
        "<p class=\"error\" id=\"form-error\" role=\"alert\">{}</p>",
        esc(message)
    )
}

/// The params form (values kept, errors beside their fields) and, with a plan, its preview
/// and the Start button carrying the previewed digest.
fn form_html(
    rb: &Runbook,
    f: &Fields,
    errors: &[(String, String)],
    preview: Option<(&Plan, &[&str])>,
) -> String {
    let error_of = |field: &str| {
        errors
            .iter()
            .find(|(name, _)| name == field)
            .map(|(_, e)| {
                // `p.count` → `p-count-error`: an id a CSS selector names without escapes.
                format!(
                    "<span class=\"field-error\" id=\"{}-error\">{}</span>",
                    esc(&field.replace('.', "-")),
                    esc(e)
                )
            })
            .unwrap_or_default()
    };
    let mut b = String::new();
    if !rb.description.is_empty() {
        let _ = write!(b, "<p id=\"description\">{}</p>", esc(&rb.description));
    }
    let _ = write!(
        b,
        "<form method=\"post\" action=\"/start/{}\" class=\"start\" id=\"start-form\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        esc(&urlencode(&rb.name)),
        esc(&f.csrf)
    );
    if !errors.is_empty() {
        b.push_str(&error_html(
            "Some values are not right; see the messages beside the fields.",
        ));
    }
    if rb.params.is_empty() {
        b.push_str("<p>This runbook takes no parameters.</p>");
    }
    for (name, spec) in &rb.params {
        let field = format!("p.{name}");
        let id = format!("p-{name}");
        let value = f.params.get(name).map(String::as_str).unwrap_or_default();
        let default = spec.default.as_ref().map(yaml_text);
        let (kind, hint) = match spec.kind {
            ParamType::String => ("text", "text"),
            ParamType::Int => ("int", "a whole number"),
            ParamType::Bool => ("bool", "true or false"),
            ParamType::List => ("list", "a list: values separated by commas"),
        };
        let mut about = spec.description.clone().unwrap_or_default();
        if !about.is_empty() {
            about.push_str(". ");
        }
        about.push_str(&format!("Type: {hint}"));
        match &default {
            Some(d) => about.push_str(&format!("; empty: the default, {d}")),
            None => about.push_str("; required"),
        }
        let invalid = errors.iter().any(|(n, _)| *n == field);
        let _ = write!(
            b,
            "<label for=\"{id}\">{}</label><span class=\"hint\" id=\"{id}-hint\">{}</span>",
            esc(name),
            esc(&about),
            id = esc(&id),
        );
        if spec.kind == ParamType::Bool {
            let _ = write!(
                b,
                "<select name=\"{field}\" id=\"{id}\" aria-describedby=\"{id}-hint\" data-kind=\"{kind}\"><option value=\"\">default{}</option>",
                default
                    .as_deref()
                    .map(|d| format!(" ({})", esc(d)))
                    .unwrap_or_default(),
                field = esc(&field),
                id = esc(&id),
            );
            for v in ["true", "false"] {
                let _ = write!(
                    b,
                    "<option{}>{v}</option>",
                    if value == v { " selected" } else { "" }
                );
            }
            b.push_str("</select>");
        } else {
            let _ = write!(
                b,
                "<input type=\"text\" name=\"{field}\" id=\"{id}\" value=\"{}\" placeholder=\"{}\" aria-describedby=\"{id}-hint\" data-kind=\"{kind}\"{}>",
                esc(value),
                esc(default.as_deref().unwrap_or_default()),
                if invalid { " aria-invalid=\"true\"" } else { "" },
                field = esc(&field),
                id = esc(&id),
            );
        }
        b.push_str(&error_of(&field));
    }
    let _ = write!(
        b,
        "<label for=\"ref\">Ref</label><span class=\"hint\">A ticket number carried through the run (optional)</span>\
<input type=\"text\" name=\"ref\" id=\"ref\" value=\"{}\">{}\
<label for=\"limit\">Only these hosts</label><span class=\"hint\">Hosts or tag:NAME among the runbook's targets, separated by commas (optional: all of them)</span>\
<input type=\"text\" name=\"limit\" id=\"limit\" value=\"{}\">",
        esc(&f.reference),
        error_of("ref"),
        esc(&f.limit),
    );
    if rb.emergency {
        let _ = write!(
            b,
            "<fieldset><legend>Break-glass</legend><label><input type=\"checkbox\" name=\"break_glass\" id=\"break-glass\"{}> Start without waiting for approval (audited; the owners review it afterwards)</label>\
<label for=\"reason\">Reason</label><input type=\"text\" name=\"reason\" id=\"reason\" value=\"{}\">{}</fieldset>",
            if f.break_glass { " checked" } else { "" },
            esc(&f.reason),
            error_of("reason"),
        );
    }
    b.push_str("<p><button type=\"submit\" name=\"action\" value=\"preview\" id=\"preview\">Preview</button></p></form>");
    if let Some((plan, frozen)) = preview {
        b.push_str(&preview_html(rb, f, plan, frozen));
    }
    b
}

/// What pressing Start will do, and the Start form: the same values, hidden, with the
/// digest shown here.
fn preview_html(rb: &Runbook, f: &Fields, plan: &Plan, frozen: &[&str]) -> String {
    let words = plan_in_words(plan);
    let mut b = String::from("<section id=\"preview-plan\"><h2>Preview</h2>");
    let _ = write!(
        b,
        "<p id=\"plan-words\">{}</p><p>Plan digest: <code id=\"digest\">{}</code></p>",
        esc(&words.summary),
        esc(&plan.digest)
    );
    if f.break_glass {
        b.push_str("<p class=\"flag\" id=\"break-glass-note\">Break-glass: it starts at once, without approval; the owners review it afterwards.</p>");
    } else if plan.approvals.is_empty() {
        b.push_str(
            "<p id=\"who-approves\">No approval is needed: it starts when you press Start.</p>",
        );
    } else {
        b.push_str("<p id=\"who-approves\">It waits for approval before anything runs:</p><ul id=\"why-approval\">");
        for w in &words.why {
            let _ = write!(b, "<li>{}</li>", esc(w));
        }
        b.push_str("</ul>");
    }
    if !frozen.is_empty() {
        let _ = write!(
            b,
            "<p class=\"error\" id=\"frozen\">Frozen by their owner: {}. Start will be refused until the freeze is lifted.</p>",
            esc(&frozen.join(", "))
        );
    }
    if !plan.targets.is_empty() {
        let _ = write!(
            b,
            "<details><summary>{} target{}</summary><ul>",
            count(plan.targets.len()),
            if plan.targets.len() == 1 { "" } else { "s" }
        );
        for t in &plan.targets {
            let _ = write!(b, "<li>{} ({})</li>", esc(&t.name), esc(&t.owner));
        }
        b.push_str("</ul></details>");
    }
    if !plan.params.is_empty() {
        b.push_str("<table id=\"preview-params\" aria-label=\"Parameters as they will run\"><tr><th>Parameter</th><th>Value</th></tr>");
        for (k, v) in &plan.params {
            let shown = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let _ = write!(b, "<tr><th>{}</th><td>{}</td></tr>", esc(k), esc(&shown));
        }
        b.push_str("</table>");
    }
    let _ = write!(
        b,
        "<form method=\"post\" action=\"/start/{}\" id=\"start-run\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
<input type=\"hidden\" name=\"digest\" value=\"{}\"><input type=\"hidden\" name=\"action\" value=\"start\">",
        esc(&urlencode(&rb.name)),
        esc(&f.csrf),
        esc(&plan.digest)
    );
    for (name, v) in &f.params {
        let _ = write!(
            b,
            "<input type=\"hidden\" name=\"p.{}\" value=\"{}\">",
            esc(name),
            esc(v)
        );
    }
    let _ = write!(
        b,
        "<input type=\"hidden\" name=\"ref\" value=\"{}\"><input type=\"hidden\" name=\"limit\" value=\"{}\">",
        esc(&f.reference),
        esc(&f.limit)
    );
    if f.break_glass {
        let _ = write!(
            b,
            "<input type=\"hidden\" name=\"break_glass\" value=\"on\"><input type=\"hidden\" name=\"reason\" value=\"{}\">",
            esc(&f.reason)
        );
    }
    b.push_str("<button type=\"submit\" id=\"start\">Start</button></form></section>");
    b
}

/// A YAML default as a person would type it.
fn yaml_text(v: &serde_yaml::Value) -> String {
    match v {
        serde_yaml::Value::String(s) => s.clone(),
        serde_yaml::Value::Sequence(items) => {
            items.iter().map(yaml_text).collect::<Vec<_>>().join(",")
        }
        serde_yaml::Value::Null => String::new(),
        other => serde_yaml::to_string(other)
            .unwrap_or_default()
            .trim()
            .to_string(),
    }
}

/// "1 runbook", "3 runbooks".
fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{} {}", count(n), if n == 1 { one } else { many })
}

//! `twofa-admin`: accounts on the configured table. Arguments are parsed here (`parse`), the
//! work is the domain's (`domain::account_admin`, `domain::policy`) on the store's ports
//! (`FactorStore` for an entity's factors), so the same commands run on the embedded store in
//! tests and on DynamoDB for real.

use std::time::Duration;

use serde_json::{json, Value};
use twofa::{
    adapters::aws::{
        aws_config,
        dynamodb::DynamoStore,
        secrets::{KeyringError, SecretKeyring, RETIRE_AFTER_MS},
    },
    domain::{
        account::Account,
        account_admin,
        callbacks::UrlRules,
        crypto::{Keys, KEY_ACTIVATION_DELAY_MS, KEY_REFRESH_MS},
        error::Error,
        factor::{Factor, FactorKind},
        factors, ids,
        policy::{self, PolicyUpdate},
        time,
    },
    http::lambda::{load_keys, Config},
    ports::{AdminStore, Clock, SystemClock},
};

pub const USAGE: &str = "\
usage: twofa-admin account <command>
       twofa-admin keys status | rotate [--activate-in SECONDS] | retire-previous

  create --email ADDRESS [--parent AC…] [--any-sender]
                                          a new account (a sub-account of --parent); prints its
                                          sid, auth token and webhook secret, this once;
                                          --any-sender: it may send from any sender the
                                          deployment has (a single-tenant setup)
  list [--json]                           every account
  show SID                                one account, its policy included (JSON)
  suspend SID | resume SID                its credentials answer 403 / work again
  rotate-token SID                        a new auth token (printed once); the old one stops
  set-callback SID --url URL [--method GET|POST] [--rotate-secret]
  set-callback SID --clear                where the account's OTP events are told
  allow-ips SID CIDR… | --any             only callers from these networks (or any again)
  senders SID RULE… | --any               the senders its sends may name in `from`: email
                                          addresses, @domains, E.164 numbers, sender IDs
                                          (a sub-account: at most its parent's)
  clear-failures SID DESTINATION          forget a number's (or address's) failed verifies, so
                                          its sends no longer answer 478
  factors SID ENTITY [--json]             an entity's authenticator-app factors: sid, status,
                                          algorithm, digits, period, name, dates (never the
                                          secret)
  remove-factor SID ENTITY FACTOR         delete one of them (a lost phone): its codes and its
                                          open challenges stop verifying
  policy SID --json '{…}'                 geo permissions, pumping guard, test numbers, senders,
                                          failed-verify budget, routing table (allowedCountries,
                                          pumpingGuard, testNumbers, senders, maxFailedVerifies,
                                          routes: {\"sms\":{\"US\":[\"sns\"],\"*\":[\"sns\"]}})

  keys status                             the keyring: each key's id and since when it is
                                          written with (no key material)
  keys rotate [--activate-in SECONDS]     a new current key, written with from SECONDS on
                                          (default 900: every function reads it first); the
                                          old one is kept as the previous key, so everything
                                          under it keeps working
  keys retire-previous                    stop keeping the previous key, a day after the
                                          current one became active (no OTP under it is
                                          pending any more): first seals again under the
                                          current key every token, webhook secret and test
                                          code still under it; refused while an account's token
                                          predates rotation (rotate-token gives it a new one)

A new account may send from no sender until granted some, except the deployment's first
account (any sender the deployment has) and a sub-account (its parent's).

Environment: TWOFA_TABLE (the table), TWOFA_SECRET_ARN (Secrets Manager) or TWOFA_SECRET_KEY
(hex) for the master key, the usual AWS variables (AWS_REGION, AWS_PROFILE…, AWS_ENDPOINT_URL
for a local emulator). Changes reach running functions within 30 s (their account cache).
";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Help,
    Create { email: String, parent: Option<String>, any_sender: bool },
    List { json: bool },
    Show { sid: String },
    Suspend { sid: String, suspended: bool },
    RotateToken { sid: String },
    SetCallback { sid: String, url: Option<String>, method: Option<String>, rotate_secret: bool },
    AllowIps { sid: String, blocks: Vec<String> },
    Senders { sid: String, rules: Vec<String> },
    ClearFailures { sid: String, to: String },
    Factors { sid: String, entity: String, json: bool },
    RemoveFactor { sid: String, entity: String, factor: String },
    Policy { sid: String, json: String },
    KeysStatus,
    KeysRotate { activate_in_secs: u32 },
    KeysRetirePrevious,
}

/// The arguments after the program name.
pub fn parse(args: &[String]) -> Result<Command, String> {
    let mut it = args.iter().map(String::as_str);
    match it.next() {
        None | Some("help" | "-h" | "--help") => return Ok(Command::Help),
        Some("account") => {}
        Some("keys") => return parse_keys(it.collect()),
        Some(other) => return Err(format!("unknown command {other:?}")),
    }
    let Some(sub) = it.next() else { return Err("account needs a command".into()) };
    if matches!(sub, "help" | "-h" | "--help") {
        return Ok(Command::Help);
    }
    let a = Args::split(it.collect(), sub)?;
    let cmd = match sub {
        "create" => {
            a.only(&["email", "parent"], &["any-sender"], 0)?;
            if a.flag("any-sender") && a.value("parent").is_some() {
                return Err(
                    "--any-sender is for top-level accounts (a sub-account starts with its parent's senders)".into()
                );
            }
            Command::Create { email: a.required("email")?, parent: a.value("parent"), any_sender: a.flag("any-sender") }
        }
        "list" => {
            a.only(&[], &["json"], 0)?;
            Command::List { json: a.flag("json") }
        }
        "show" => {
            a.only(&[], &[], 1)?;
            Command::Show { sid: a.sid()? }
        }
        "suspend" | "resume" => {
            a.only(&[], &[], 1)?;
            Command::Suspend { sid: a.sid()?, suspended: sub == "suspend" }
        }
        "rotate-token" => {
            a.only(&[], &[], 1)?;
            Command::RotateToken { sid: a.sid()? }
        }
        "set-callback" => {
            a.only(&["url", "method"], &["clear", "rotate-secret"], 1)?;
            let url = a.value("url");
            if url.is_some() == a.flag("clear") {
                return Err("set-callback needs --url URL or --clear".into());
            }
            if url.is_none() && a.value("method").is_some() {
                return Err("--method goes with --url".into());
            }
            Command::SetCallback {
                sid: a.sid()?,
                url,
                method: a.value("method"),
                rotate_secret: a.flag("rotate-secret"),
            }
        }
        "allow-ips" => {
            a.only(&[], &["any"], usize::MAX)?;
            let sid = a.sid()?;
            let blocks = a.positional[1..].to_vec();
            if blocks.is_empty() != a.flag("any") {
                return Err("allow-ips needs CIDR blocks, or --any to allow any caller".into());
            }
            Command::AllowIps { sid, blocks }
        }
        "senders" => {
            a.only(&[], &["any"], usize::MAX)?;
            let sid = a.sid()?;
            let rules = a.positional[1..].to_vec();
            if rules.is_empty() != a.flag("any") {
                return Err("senders needs sender rules, or --any for any sender the deployment has".into());
            }
            Command::Senders { sid, rules: if rules.is_empty() { vec!["*".to_owned()] } else { rules } }
        }
        "clear-failures" => {
            a.only(&[], &[], 2)?;
            let sid = a.sid()?;
            let to = a.positional.get(1).cloned().ok_or("clear-failures needs SID and DESTINATION")?;
            Command::ClearFailures { sid, to }
        }
        "factors" => {
            a.only(&[], &["json"], 2)?;
            let sid = a.sid()?;
            let entity = a.positional.get(1).cloned().ok_or("factors needs SID and ENTITY")?;
            Command::Factors { sid, entity, json: a.flag("json") }
        }
        "remove-factor" => {
            a.only(&[], &[], 3)?;
            let sid = a.sid()?;
            let (Some(entity), Some(factor)) = (a.positional.get(1), a.positional.get(2)) else {
                return Err("remove-factor needs SID, ENTITY and FACTOR".into());
            };
            Command::RemoveFactor { sid, entity: entity.clone(), factor: factor.clone() }
        }
        "policy" => {
            a.only(&["json"], &[], 1)?;
            Command::Policy { sid: a.sid()?, json: a.required("json")? }
        }
        other => return Err(format!("unknown account command {other:?}")),
    };
    Ok(cmd)
}

fn parse_keys(args: Vec<&str>) -> Result<Command, String> {
    let Some((&sub, rest)) = args.split_first() else { return Err("keys needs a command".into()) };
    let a = Args::split(rest.to_vec(), sub)?;
    Ok(match sub {
        "status" => {
            a.only(&[], &[], 0)?;
            Command::KeysStatus
        }
        "rotate" => {
            a.only(&["activate-in"], &[], 0)?;
            let activate_in_secs = match a.value("activate-in") {
                None => (KEY_ACTIVATION_DELAY_MS / 1000) as u32,
                Some(v) => v.parse().map_err(|_| "--activate-in takes whole seconds".to_owned())?,
            };
            Command::KeysRotate { activate_in_secs }
        }
        "retire-previous" => {
            a.only(&[], &[], 0)?;
            Command::KeysRetirePrevious
        }
        "help" | "-h" | "--help" => Command::Help,
        other => return Err(format!("unknown keys command {other:?}")),
    })
}

/// A command's arguments: `--name value` / `--name=value` options, `--flag`s, positionals.
struct Args {
    command: String,
    options: Vec<(String, Option<String>)>,
    positional: Vec<String>,
}

/// Options that take no value.
const FLAGS: [&str; 5] = ["json", "clear", "rotate-secret", "any", "any-sender"];

impl Args {
    fn split(raw: Vec<&str>, command: &str) -> Result<Self, String> {
        let mut a = Args { command: command.to_owned(), options: vec![], positional: vec![] };
        let mut raw = raw.into_iter();
        while let Some(arg) = raw.next() {
            let Some(name) = arg.strip_prefix("--") else {
                a.positional.push(arg.to_owned());
                continue;
            };
            let (name, value) = match name.split_once('=') {
                Some((n, v)) => (n, Some(v.to_owned())),
                // `policy --json` takes a value; `list --json` is a flag.
                None if FLAGS.contains(&name) && !(name == "json" && command == "policy") => (name, None),
                None => (name, Some(raw.next().ok_or_else(|| format!("--{name} needs a value"))?.to_owned())),
            };
            if a.options.iter().any(|(n, _)| n == name) {
                return Err(format!("--{name} given twice"));
            }
            a.options.push((name.to_owned(), value));
        }
        Ok(a)
    }

    /// Refuse options not in `valued`/`flags` and more than `max_positional` positionals.
    fn only(&self, valued: &[&str], flags: &[&str], max_positional: usize) -> Result<(), String> {
        for (name, value) in &self.options {
            let ok = if value.is_some() { valued.contains(&name.as_str()) } else { flags.contains(&name.as_str()) };
            if !ok {
                return Err(format!(
                    "{} does not take --{name}{}",
                    self.command,
                    if value.is_some() { " VALUE" } else { "" }
                ));
            }
        }
        if self.positional.len() > max_positional {
            return Err(format!("{}: unexpected argument {:?}", self.command, self.positional[max_positional]));
        }
        Ok(())
    }

    fn value(&self, name: &str) -> Option<String> {
        self.options.iter().find(|(n, _)| n == name).and_then(|(_, v)| v.clone())
    }

    fn required(&self, name: &str) -> Result<String, String> {
        self.value(name).ok_or_else(|| format!("{} needs --{name}", self.command))
    }

    fn flag(&self, name: &str) -> bool {
        self.options.iter().any(|(n, v)| n == name && v.is_none())
    }

    fn sid(&self) -> Result<String, String> {
        self.positional.first().cloned().ok_or_else(|| format!("{} needs an account SID", self.command))
    }
}

/// Build the DynamoDB store and the keys from the environment (as the functions do), then run.
pub async fn run_from_env(command: Command) -> Result<String, String> {
    let config = Config::from_env().map_err(|e| e.to_string())?;
    let sdk = aws_config().await;
    // No cache: each command reads what is stored now.
    let store =
        DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), config.table).with_account_cache_ttl(Duration::ZERO);
    if matches!(command, Command::KeysStatus | Command::KeysRotate { .. } | Command::KeysRetirePrevious) {
        let arn = std::env::var("TWOFA_SECRET_ARN")
            .map_err(|_| "keys commands need TWOFA_SECRET_ARN (a TWOFA_SECRET_KEY is one fixed key)".to_owned())?;
        let ring = SecretKeyring::new(aws_sdk_secretsmanager::Client::new(&sdk), arn);
        return run_keys(command, &ring, &store, SystemClock.now_ms()).await;
    }
    let keys = load_keys(&sdk).await.map_err(|e| e.to_string())?;
    run(command, &store, &keys, &SystemClock).await
}

/// Run a `keys` command on the keyring in `ring` at `now`; what to print. Retiring re-seals
/// what `store`'s accounts keep under the previous key first.
pub async fn run_keys(
    command: Command,
    ring: &SecretKeyring,
    store: &dyn AdminStore,
    now: i64,
) -> Result<String, String> {
    let text = |e: KeyringError| e.to_string();
    match command {
        Command::KeysStatus => {
            let stored = ring.read().await.map_err(text)?;
            let writer = stored.keys().map_err(text)?.writer_kid();
            let mut out = String::new();
            for (role, key) in
                std::iter::once(("current", &stored.current)).chain(stored.previous.iter().map(|p| ("previous", p)))
            {
                out.push_str(&format!(
                    "key {} {role}, active from {}{}\n",
                    key.kid,
                    time::iso(key.active_from_ms),
                    if key.kid == writer { ", written with now" } else { "" }
                ));
            }
            Ok(out)
        }
        Command::KeysRotate { activate_in_secs } => {
            let key = ring.rotate(now, i64::from(activate_in_secs) * 1000).await.map_err(text)?;
            Ok(format!(
                "key {} is current, written with from {}; the previous key keeps working until retired \
                 (twofa-admin keys retire-previous, from {} on)\n",
                key.kid,
                time::iso(key.active_from_ms),
                time::iso(key.active_from_ms + RETIRE_AFTER_MS)
            ))
        }
        Command::KeysRetirePrevious => Ok(match ring.retire_previous(store, now).await.map_err(text)? {
            None => "no previous key to retire\n".to_owned(),
            Some(r) => format!(
                "key {} retired ({} account values sealed again under key {}); running functions stop reading it \
                 within {} minutes\n",
                r.kid,
                r.resealed,
                r.current,
                KEY_REFRESH_MS / 60_000
            ),
        }),
        _ => Err("not a keys command".to_owned()),
    }
}

/// Run `command` on `store`; what to print.
pub async fn run(command: Command, store: &dyn AdminStore, keys: &Keys, clock: &dyn Clock) -> Result<String, String> {
    let sid_of = |c: &Command| match c {
        Command::Show { sid }
        | Command::Suspend { sid, .. }
        | Command::RotateToken { sid }
        | Command::SetCallback { sid, .. }
        | Command::AllowIps { sid, .. }
        | Command::Senders { sid, .. }
        | Command::ClearFailures { sid, .. }
        | Command::Factors { sid, .. }
        | Command::RemoveFactor { sid, .. }
        | Command::Policy { sid, .. } => Some(sid.clone()),
        Command::Create { parent, .. } => parent.clone(),
        _ => None,
    };
    let sid = sid_of(&command);
    let factor = match &command {
        Command::RemoveFactor { entity, factor, .. } => Some(format!("no factor {factor} of entity {entity}")),
        _ => None,
    };
    execute(command, store, keys, clock).await.map_err(|e| match (e, sid) {
        (Error::NotFound, Some(sid)) => format!("no account {sid}"),
        (Error::FactorNotFound, _) if factor.is_some() => factor.unwrap_or_default(),
        (Error::Contended, _) => "the account changed meanwhile; run the command again".to_owned(),
        (e, _) => e.to_string(),
    })
}

async fn execute(command: Command, store: &dyn AdminStore, keys: &Keys, clock: &dyn Clock) -> twofa::Result<String> {
    Ok(match command {
        Command::Help => USAGE.to_owned(),
        Command::KeysStatus | Command::KeysRotate { .. } | Command::KeysRetirePrevious => {
            return Err(Error::invalid("keys", "keys commands run on the keyring (run_keys)"))
        }
        Command::Create { email, parent, any_sender } => {
            let mut c = account_admin::create(store, keys, clock.now_ms(), &email, parent.as_deref()).await?;
            if any_sender && c.account.policy.senders.is_some() {
                let update = PolicyUpdate { senders: Some(vec!["*".to_owned()]), ..Default::default() };
                c.account.policy = policy::update_policy(store, keys, &c.account.sid, update).await?;
            }
            // Shell assignments: `eval "$(twofa-admin account create …)"` works.
            let senders = match &c.account.policy.senders {
                None => "any sender the deployment has".to_owned(),
                Some(l) if l.is_empty() => "none yet (twofa-admin account senders SID RULE…)".to_owned(),
                Some(l) => l.join(" "),
            };
            format!(
                "ACCOUNT_SID={}\nAUTH_TOKEN={}\nWEBHOOK_SECRET={}\n# senders: {senders}\n",
                c.account.sid, c.token.0, c.webhook_secret.0
            )
        }
        Command::List { json } => {
            let accounts = store.list_accounts().await?;
            if json {
                let all: Vec<Value> = accounts.iter().map(view).collect();
                format!("{}\n", serde_json::to_string_pretty(&all).unwrap_or_default())
            } else {
                table(&accounts)
            }
        }
        Command::Show { sid } => {
            let account = store.get_account(&sid).await?.ok_or(Error::NotFound)?;
            format!("{}\n", serde_json::to_string_pretty(&view(&account)).unwrap_or_default())
        }
        Command::Suspend { sid, suspended } => {
            let a = account_admin::set_suspended(store, &sid, suspended).await?;
            format!("{} {}\n", a.sid, status(&a))
        }
        Command::RotateToken { sid } => {
            let token = account_admin::rotate_token(store, keys, &sid).await?;
            format!("AUTH_TOKEN={}\n", token.0)
        }
        Command::Senders { sid, rules } => {
            let update = PolicyUpdate { senders: Some(rules), ..Default::default() };
            let p = policy::update_policy(store, keys, &sid, update).await?;
            format!("{sid} senders: {}\n", p.senders.map_or_else(|| "*".to_owned(), |l| l.join(" ")))
        }
        Command::ClearFailures { sid, to } => {
            store.get_account(&sid).await?.ok_or(Error::NotFound)?;
            // Stored as sends store it: a number in E.164, an address in lower case.
            let to = match twofa::domain::phone::parse(&to, "destination") {
                Ok(p) if !to.contains('@') => p.e164,
                _ => to.trim().to_ascii_lowercase(),
            };
            if store.clear_failures(&sid, &to).await? {
                format!("{sid} {to}: failed verifies cleared\n")
            } else {
                format!("{sid} {to}: no failed verifies to clear\n")
            }
        }
        Command::Factors { sid, entity, json } => {
            store.get_account(&sid).await?.ok_or(Error::NotFound)?;
            let entity = factors::entity(&entity)?;
            let all = store.list_factors(&sid, entity).await?;
            if json {
                let all: Vec<Value> = all.iter().map(factor_view).collect();
                format!("{}\n", serde_json::to_string_pretty(&all).unwrap_or_default())
            } else if all.is_empty() {
                format!("{sid} {entity}: no factors\n")
            } else {
                factor_table(&all)
            }
        }
        Command::RemoveFactor { sid, entity, factor } => {
            store.get_account(&sid).await?.ok_or(Error::NotFound)?;
            let entity = factors::entity(&entity)?;
            if !ids::is_sid(ids::FACTOR, &factor) {
                return Err(Error::FactorNotFound);
            }
            let gone = store.delete_factor(&sid, entity, &factor).await?.ok_or(Error::FactorNotFound)?;
            format!("{sid} {entity} {}: removed ({})\n", gone.sid, gone.status.as_str())
        }
        Command::SetCallback { sid, url, method, rotate_secret } => {
            let update = PolicyUpdate {
                callback_url: Some(url),
                callback_method: method,
                rotate_webhook_secret: rotate_secret,
                ..Default::default()
            };
            let change = policy::update_policy_with(store, keys, &sid, update, UrlRules::Public).await?;
            let mut out = match &change.policy.callback {
                Some(c) => format!("{sid} callback {} {}\n", c.method.as_str(), c.url),
                None => format!("{sid} callback none\n"),
            };
            if let Some(secret) = change.webhook_secret {
                out.push_str(&format!("WEBHOOK_SECRET={}\n", secret.0));
            }
            out
        }
        Command::AllowIps { sid, blocks } => {
            let list = account_admin::allow_ips(store, &sid, &blocks).await?;
            if list.is_empty() {
                format!("{sid} allows any caller\n")
            } else {
                format!("{sid} allows {}\n", list.iter().map(ToString::to_string).collect::<Vec<_>>().join(" "))
            }
        }
        Command::Policy { sid, json } => {
            let update: PolicyUpdate =
                serde_json::from_str(&json).map_err(|e| Error::invalid("json", format!("not a policy: {e}")))?;
            let change = policy::update_policy_with(store, keys, &sid, update, UrlRules::Public).await?;
            let mut out = format!("{}\n", serde_json::to_string_pretty(&change.policy.view()).unwrap_or_default());
            if let Some(secret) = change.webhook_secret {
                out.push_str(&format!("WEBHOOK_SECRET={}\n", secret.0));
            }
            // Shown this once (stored only sealed): one line per provider added or rotated.
            for p in change.provider_secrets {
                out.push_str(&format!("PROVIDER_SECRET {} {}\n", p.name, p.secret));
            }
            out
        }
    })
}

fn status(a: &Account) -> &'static str {
    if a.suspended {
        "suspended"
    } else {
        "active"
    }
}

/// An account as `show` and `list --json` print it: never its token hash or sealed secrets.
fn view(a: &Account) -> Value {
    json!({
        "sid": a.sid,
        "parentSid": a.parent(),
        "email": a.email,
        "status": status(a),
        "allowedIps": a.allowed_ips.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "dateCreated": time::iso(a.created_ms),
        "policy": a.policy.view(),
    })
}

/// A factor as `factors --json` prints it: what the API shows of it (never its secret), and
/// when it was last used.
fn factor_view(f: &Factor) -> Value {
    let mut v = f.view();
    v["lastCodeAt"] = json!(last_code_at(f));
    v
}

/// When the time step of the last code the factor took began (confirm or a challenge's
/// verify): whether the entity still uses it.
fn last_code_at(f: &Factor) -> Option<String> {
    f.last_step.map(|step| time::iso(step * i64::from(f.totp.period_secs) * 1000))
}

fn factor_table(all: &[Factor]) -> String {
    let header = ["FACTOR", "TYPE", "STATUS", "ALGORITHM", "DIGITS", "PERIOD", "NAME", "CREATED", "LAST CODE"];
    let rows = all.iter().map(|f| {
        // A passkey has no code parameters.
        let totp = |v: String| if f.kind == FactorKind::Totp { v } else { "-".to_owned() };
        [
            f.sid.clone(),
            f.kind.as_str().to_owned(),
            f.status.as_str().to_owned(),
            totp(f.totp.algorithm.as_str().to_owned()),
            totp(f.totp.digits.to_string()),
            totp(format!("{}s", f.totp.period_secs)),
            f.friendly_name.clone().unwrap_or_else(|| "-".into()),
            time::iso(f.created_ms),
            last_code_at(f).unwrap_or_else(|| "-".into()),
        ]
    });
    columns(std::iter::once(header.map(str::to_owned)).chain(rows).collect())
}

/// Rows as aligned columns, two spaces apart.
fn columns<const N: usize>(rows: Vec<[String; N]>) -> String {
    let widths: Vec<usize> = (0..N).map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

fn table(accounts: &[Account]) -> String {
    let mut rows = vec![[
        "SID".to_owned(),
        "PARENT".into(),
        "EMAIL".into(),
        "STATUS".into(),
        "ALLOWED IPS".into(),
        "CREATED".into(),
    ]];
    for a in accounts {
        let ips = if a.allowed_ips.is_empty() {
            "any".to_owned()
        } else {
            a.allowed_ips.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")
        };
        rows.push([
            a.sid.clone(),
            a.parent().unwrap_or("-").to_owned(),
            a.email.clone().unwrap_or_else(|| "-".into()),
            status(a).to_owned(),
            ips,
            time::iso(a.created_ms),
        ]);
    }
    columns(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn every_command_parses_with_its_options() {
        assert_eq!(
            parse(&args("account create --email a@example.com --parent ACp")).unwrap(),
            Command::Create { email: "a@example.com".into(), parent: Some("ACp".into()), any_sender: false }
        );
        assert_eq!(
            parse(&args("account create --email=a@example.com")).unwrap(),
            Command::Create { email: "a@example.com".into(), parent: None, any_sender: false }
        );
        assert_eq!(
            parse(&args("account create --email a@example.com --any-sender")).unwrap(),
            Command::Create { email: "a@example.com".into(), parent: None, any_sender: true }
        );
        assert_eq!(
            parse(&args("account senders AC1 Acme @acme.example")).unwrap(),
            Command::Senders { sid: "AC1".into(), rules: vec!["Acme".into(), "@acme.example".into()] }
        );
        assert_eq!(
            parse(&args("account senders AC1 --any")).unwrap(),
            Command::Senders { sid: "AC1".into(), rules: vec!["*".into()] }
        );
        assert!(parse(&args("account create --email a@example.com --parent ACp --any-sender")).is_err());
        assert_eq!(parse(&args("account list --json")).unwrap(), Command::List { json: true });
        assert_eq!(parse(&args("keys status")).unwrap(), Command::KeysStatus);
        assert_eq!(parse(&args("keys rotate")).unwrap(), Command::KeysRotate { activate_in_secs: 900 });
        assert_eq!(parse(&args("keys rotate --activate-in 0")).unwrap(), Command::KeysRotate { activate_in_secs: 0 });
        assert_eq!(parse(&args("keys retire-previous")).unwrap(), Command::KeysRetirePrevious);
        assert!(parse(&args("keys rotate --activate-in soon")).is_err());
        assert!(parse(&args("keys retire")).is_err());
        assert_eq!(
            parse(&args("account resume AC1")).unwrap(),
            Command::Suspend { sid: "AC1".into(), suspended: false }
        );
        assert_eq!(
            parse(&args("account set-callback AC1 --url https://h.example.com/cb --method GET")).unwrap(),
            Command::SetCallback {
                sid: "AC1".into(),
                url: Some("https://h.example.com/cb".into()),
                method: Some("GET".into()),
                rotate_secret: false
            }
        );
        assert_eq!(
            parse(&args("account allow-ips AC1 10.0.0.0/8 192.0.2.1")).unwrap(),
            Command::AllowIps { sid: "AC1".into(), blocks: vec!["10.0.0.0/8".into(), "192.0.2.1".into()] }
        );
        assert_eq!(
            parse(&args("account allow-ips AC1 --any")).unwrap(),
            Command::AllowIps { sid: "AC1".into(), blocks: vec![] }
        );
        let policy =
            vec!["account".into(), "policy".into(), "AC1".into(), "--json".into(), r#"{"testNumbers":[]}"#.into()];
        assert_eq!(
            parse(&policy).unwrap(),
            Command::Policy { sid: "AC1".into(), json: r#"{"testNumbers":[]}"#.into() }
        );
        assert_eq!(
            parse(&args("account factors AC1 alice@example.com")).unwrap(),
            Command::Factors { sid: "AC1".into(), entity: "alice@example.com".into(), json: false }
        );
        assert_eq!(
            parse(&args("account factors AC1 alice --json")).unwrap(),
            Command::Factors { sid: "AC1".into(), entity: "alice".into(), json: true }
        );
        assert_eq!(
            parse(&args("account remove-factor AC1 alice YF1")).unwrap(),
            Command::RemoveFactor { sid: "AC1".into(), entity: "alice".into(), factor: "YF1".into() }
        );
        assert_eq!(parse(&args("--help")).unwrap(), Command::Help);
    }

    #[test]
    fn malformed_command_lines_say_what_is_wrong() {
        let err = |line: &str| parse(&args(line)).unwrap_err();
        assert_eq!(err("account create"), "create needs --email");
        assert_eq!(err("account suspend"), "suspend needs an account SID");
        assert_eq!(err("account suspend AC1 AC2"), "suspend: unexpected argument \"AC2\"");
        assert_eq!(err("account list --email x"), "list does not take --email VALUE");
        assert_eq!(err("account set-callback AC1"), "set-callback needs --url URL or --clear");
        assert_eq!(err("account allow-ips AC1"), "allow-ips needs CIDR blocks, or --any to allow any caller");
        assert_eq!(err("account policy AC1 --json"), "--json needs a value");
        assert_eq!(err("account frobnicate"), "unknown account command \"frobnicate\"");
        assert_eq!(err("account create --email a --email b"), "--email given twice");
        assert_eq!(err("account factors AC1"), "factors needs SID and ENTITY");
        assert_eq!(err("account remove-factor AC1 alice"), "remove-factor needs SID, ENTITY and FACTOR");
        assert_eq!(err("account remove-factor AC1 alice YF1 YF2"), "remove-factor: unexpected argument \"YF2\"");
    }
}

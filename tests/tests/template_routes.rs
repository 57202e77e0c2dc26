//! Every route of every router is reachable through template.yaml, and reaches the function
//! that serves it; every HttpApi event of the template is used by some route of its function.
//!
//! The routers' paths are read from the routers themselves (axum's `Debug` of a `Router` lists
//! its paths); the template is read with a YAML parser that keeps CloudFormation's tags
//! (`!Ref`, `!Sub`, ...) as tagged values. Matching follows API Gateway HTTP APIs: a `{name}`
//! segment matches one segment, a trailing `{name+}` one or more, and the most specific route
//! wins (literal segments over parameters over a greedy tail).
//!
//! A new function: one line in `routers()`.

use std::{collections::BTreeMap, sync::Arc};

use serde_yaml::Value;
use twofa::{
    adapters::{clock::AdjustableClock, memory::MemoryStore, outbox::Outbox},
    domain::crypto::Keys,
    ports::{Deps, NoScheduler},
};

/// Each function's binary (template `Metadata.BuildProperties.Binary`) and its router.
fn routers() -> Vec<(&'static str, axum::Router)> {
    let deps = || {
        let clock = Arc::new(AdjustableClock::default());
        let outbox = Arc::new(Outbox::new(clock.clone()));
        Deps {
            store: Arc::new(MemoryStore::new()),
            dispatcher: outbox,
            clock,
            keys: Arc::new(Keys::random()),
            scheduler: Arc::new(NoScheduler),
        }
    };
    vec![
        ("twofa-otp", twofa::http::otp::router(deps())),
        ("twofa-limits", twofa::http::limits::router(deps())),
        ("twofa-workflows", twofa::http::workflows::router(deps())),
        ("twofa-records", twofa::http::records::router(deps())),
        ("twofa-console", twofa::http::console::router(deps())),
        ("twofa-factors", twofa::http::factors::router(deps())),
    ]
}

/// The paths a router serves, from its `Debug` (`Node { paths: {RouteId(0): "/2fa/send", ..} }`).
fn router_paths(router: &axum::Router) -> Vec<String> {
    let debug = format!("{router:?}");
    // The routes proper; the fallback router after them holds axum's own catch-all paths.
    let routes = debug.split("fallback_router").next().unwrap();
    let mut paths = Vec::new();
    let mut rest = routes;
    while let Some(i) = rest.find("): \"/") {
        rest = &rest[i + 4..];
        let end = rest.find('"').expect("closing quote");
        let path = &rest[..end];
        if !path.contains("__private__") && !paths.iter().any(|p| p == path) {
            paths.push(path.to_owned());
        }
        rest = &rest[end..];
    }
    assert!(!paths.is_empty(), "no paths found in the router's Debug: {debug}");
    paths.sort();
    paths
}

struct Event {
    function: String,
    binary: String,
    name: String,
    method: String,
    path: String,
}

fn template_events() -> Vec<Event> {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml")).expect("template.yaml");
    let template: Value = serde_yaml::from_str(&text).expect("template.yaml parses");
    let resources = template["Resources"].as_mapping().expect("Resources");
    let mut events = Vec::new();
    for (id, resource) in resources {
        if resource["Type"].as_str() != Some("AWS::Serverless::Function") {
            continue;
        }
        let function = id.as_str().unwrap().to_owned();
        let binary = resource["Metadata"]["BuildProperties"]["Binary"]
            .as_str()
            .unwrap_or_else(|| panic!("{function}: no Metadata.BuildProperties.Binary"))
            .to_owned();
        let Some(fn_events) = resource["Properties"]["Events"].as_mapping() else { continue };
        for (name, event) in fn_events {
            if event["Type"].as_str() != Some("HttpApi") {
                continue;
            }
            let props = &event["Properties"];
            events.push(Event {
                function: function.clone(),
                binary: binary.clone(),
                name: name.as_str().unwrap().to_owned(),
                method: props["Method"].as_str().expect("Method").to_owned(),
                path: props["Path"].as_str().expect("Path").to_owned(),
            });
        }
    }
    assert!(!events.is_empty(), "no HttpApi events in template.yaml");
    events
}

/// How specifically template path `route` matches the concrete `path`: `None` if it does not;
/// otherwise a key where larger is more specific (API Gateway picks the most specific route).
fn specificity(route: &str, path: &str) -> Option<(usize, usize, bool)> {
    let route: Vec<&str> = route.trim_start_matches('/').split('/').collect();
    let path: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (mut literals, mut params) = (0, 0);
    for (i, seg) in route.iter().enumerate() {
        if seg.starts_with('{') && seg.ends_with("+}") {
            assert_eq!(i, route.len() - 1, "a greedy parameter must be the last segment");
            // one or more segments, the first not empty
            return (path.len() > i && !path[i].is_empty()).then_some((literals, params, false));
        }
        let part = path.get(i)?;
        if seg.starts_with('{') && seg.ends_with('}') {
            if part.is_empty() {
                return None;
            }
            params += 1;
        } else if seg == part {
            literals += 1;
        } else {
            return None;
        }
    }
    (route.len() == path.len()).then_some((literals, params, true))
}

/// A concrete request path for a router path: each `{param}` becomes a sample segment.
fn samples(router_path: &str) -> Vec<String> {
    let concrete: Vec<String> = router_path
        .split('/')
        .map(|seg| if seg.starts_with('{') { "XX0123456789abcdef".to_owned() } else { seg.to_owned() })
        .collect();
    let concrete = concrete.join("/");
    if router_path.ends_with('}') {
        // `{sid}.json` / `{sid}.xml` are served by the same route (strip_format_suffix)
        vec![concrete.clone(), format!("{concrete}.json"), format!("{concrete}.xml")]
    } else {
        vec![concrete]
    }
}

#[test]
fn every_router_route_reaches_its_function_and_every_event_is_used() {
    let events = template_events();
    let routers = routers();
    // Every function of the template has a router here, and every router a function.
    let binaries: std::collections::BTreeSet<&str> = events.iter().map(|e| e.binary.as_str()).collect();
    let known: std::collections::BTreeSet<&str> = routers.iter().map(|(b, _)| *b).collect();
    assert_eq!(binaries, known, "functions with HttpApi events vs routers in this test");

    let mut used: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    let mut problems = Vec::new();
    for e in &events {
        if e.method != "ANY" {
            problems.push(format!(
                "{}.{}: Method {} (the routers answer 405 themselves: use ANY)",
                e.function, e.name, e.method
            ));
        }
        // The API under /2fa; the console's pages under /console, its function's alone.
        let console = e.binary == "twofa-console" && (e.path == "/console" || e.path.starts_with("/console/"));
        if !e.path.starts_with("/2fa/") && !console {
            problems.push(format!("{}.{}: path {} outside /2fa", e.function, e.name, e.path));
        }
    }
    for (binary, router) in &routers {
        for route in router_paths(router) {
            for sample in samples(&route) {
                let best =
                    events.iter().filter_map(|e| specificity(&e.path, &sample).map(|s| (s, e))).max_by_key(|(s, _)| *s);
                match best {
                    None => problems.push(format!("{binary} route {route}: {sample} matches no template event")),
                    Some((_, e)) if e.binary != *binary => problems.push(format!(
                        "{binary} route {route}: {sample} goes to {} ({}) by event {}",
                        e.function, e.binary, e.path
                    )),
                    Some((_, e)) => used.entry((e.function.clone(), e.name.clone())).or_default().push(sample),
                }
            }
        }
    }
    for e in &events {
        if !used.contains_key(&(e.function.clone(), e.name.clone())) {
            problems.push(format!("{}.{} ({}) serves no route of {}", e.function, e.name, e.path, e.binary));
        }
    }
    assert!(problems.is_empty(), "template.yaml vs the routers:\n  {}", problems.join("\n  "));
}

#[test]
fn matching_follows_api_gateway() {
    assert!(specificity("/2fa/send", "/2fa/send").is_some());
    assert!(specificity("/2fa/send", "/2fa/send.json").is_none());
    assert!(specificity("/2fa/search/{proxy+}", "/2fa/search").is_none());
    assert!(specificity("/2fa/search/{proxy+}", "/2fa/search/OTP1.json").is_some());
    assert!(specificity("/2fa/usage/{proxy+}", "/2fa/usage/records/daily").is_some());
    assert!(specificity("/2fa/limits/{sid}", "/2fa/limits/").is_none());
    assert!(
        specificity("/2fa/limits/search", "/2fa/limits/search")
            > specificity("/2fa/limits/{proxy+}", "/2fa/limits/search")
    );
    assert!(router_paths(&routers()[0].1).contains(&"/2fa/send.xml".to_owned()));
}

/// Every alarm of the template: (metric name, the alarm written out, to look for the resource
/// its dimensions name).
fn template_alarms(resources: &serde_yaml::Mapping) -> Vec<(String, String)> {
    resources
        .values()
        .filter(|r| r["Type"].as_str() == Some("AWS::CloudWatch::Alarm"))
        .map(|r| {
            let props = &r["Properties"];
            (
                props["MetricName"].as_str().unwrap_or_default().to_owned(),
                serde_yaml::to_string(&props["Dimensions"]).unwrap(),
            )
        })
        .collect()
}

#[test]
fn every_function_dead_letter_queue_and_state_machine_raises_an_alarm() {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml")).expect("template.yaml");
    let template: Value = serde_yaml::from_str(&text).expect("template.yaml parses");
    let resources = template["Resources"].as_mapping().expect("Resources");
    let alarms = template_alarms(resources);
    let alarmed = |metric: &str, id: &str| {
        alarms.iter().any(|(m, dims)| m == metric && dims.split(|c: char| !c.is_alphanumeric()).any(|w| w == id))
    };
    // Dead-letter queues are named so (the redrive target and the on-failure destinations).
    let dead_letters = resources
        .iter()
        .filter(|(id, r)| r["Type"].as_str() == Some("AWS::SQS::Queue") && id.as_str().unwrap().contains("DeadLetter"))
        .count();
    assert!(dead_letters > 0, "the template has a dead-letter queue");
    let mut missing = Vec::new();
    for (id, resource) in resources {
        let id = id.as_str().unwrap();
        match resource["Type"].as_str() {
            Some("AWS::Serverless::Function") => {
                for metric in ["Throttles", "Errors"] {
                    if !alarmed(metric, id) {
                        missing.push(format!("{id}: {metric}"));
                    }
                }
            }
            Some("AWS::Serverless::StateMachine") if !alarmed("ExecutionsFailed", id) => {
                missing.push(format!("{id}: ExecutionsFailed"))
            }
            Some("AWS::SQS::Queue")
                if id.contains("DeadLetter") && !alarmed("ApproximateNumberOfMessagesVisible", id) =>
            {
                missing.push(format!("{id}: ApproximateNumberOfMessagesVisible"))
            }
            _ => {}
        }
    }
    assert!(missing.is_empty(), "resources without their alarm: {missing:?}");
    assert!(alarms.iter().any(|(m, _)| m == "5xx"), "the API's 5xx alarm");
}

#[test]
fn the_template_declares_the_indexes_the_store_reads_and_no_other() {
    // Given the deployed table's definition
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml")).expect("template.yaml");
    let template: Value = serde_yaml::from_str(&text).expect("template.yaml parses");
    let table = &template["Resources"]["TwofaTable"]["Properties"];
    let indexes = table["GlobalSecondaryIndexes"].as_sequence().expect("GlobalSecondaryIndexes");
    // Then it has the account directory and the expiry sweeper's index (what `create_table`
    // makes for tests and local runs), and nothing for search to keep up to date: search reads
    // the table's own OTP partitions, so every OTP write would pay for an index in vain
    use twofa::adapters::aws::dynamodb::{GSI1, GSI2};
    let names: Vec<&str> = indexes.iter().map(|i| i["IndexName"].as_str().unwrap()).collect();
    assert_eq!(names, [GSI1, GSI2]);
    let keys: Vec<&str> =
        table["KeySchema"].as_sequence().unwrap().iter().map(|k| k["AttributeName"].as_str().unwrap()).collect();
    assert_eq!(keys, ["pk", "sk"]);
    let defined: Vec<&str> = table["AttributeDefinitions"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| a["AttributeName"].as_str().unwrap())
        .collect();
    assert_eq!(
        defined,
        ["pk", "sk", "gsi1pk", "gsi1sk", "gsi2pk", "gsi2sk"],
        "CloudFormation refuses unused definitions"
    );
}

/// The target of a `!Ref` (kept by serde_yaml as a tagged value), if `value` is one.
fn ref_target(value: &Value) -> Option<&str> {
    match value {
        Value::Tagged(tagged) if tagged.tag == "Ref" => tagged.value.as_str(),
        _ => None,
    }
}

/// The OTP routes: a send+verify pair's path (and cancel's), each form its own route.
const OTP_ROUTES: [&str; 9] = [
    "/2fa/send",
    "/2fa/send.json",
    "/2fa/send.xml",
    "/2fa/verify",
    "/2fa/verify.json",
    "/2fa/verify.xml",
    "/2fa/cancel",
    "/2fa/cancel.json",
    "/2fa/cancel.xml",
];

#[test]
fn otp_routes_take_the_pair_rate_and_every_other_route_the_protective_throttle() {
    // Given the template's HTTP API (the one AWS::Serverless::HttpApi), its HttpApi events and
    // its parameters
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml")).expect("template.yaml");
    let template: Value = serde_yaml::from_str(&text).expect("template.yaml parses");
    let resources = template["Resources"].as_mapping().expect("Resources");
    let apis: Vec<&Value> =
        resources.values().filter(|r| r["Type"].as_str() == Some("AWS::Serverless::HttpApi")).collect();
    assert_eq!(apis.len(), 1, "one HttpApi serves every route");
    let parameter = |name: &str| &template["Parameters"][name];
    let default =
        |name: &str| parameter(name)["Default"].as_f64().unwrap_or_else(|| panic!("{name}: a numeric Default"));

    // When the API's default route settings and each event's own route settings are read
    let settings = &apis[0]["Properties"]["DefaultRouteSettings"];
    assert!(apis[0]["Properties"]["RouteSettings"].is_null(), "route settings live on the events");
    let mut otp_routes = Vec::new();
    for (_, resource) in resources {
        let Some(events) = resource["Properties"]["Events"].as_mapping() else { continue };
        for (name, event) in events.iter().filter(|(_, e)| e["Type"].as_str() == Some("HttpApi")) {
            let props = &event["Properties"];
            let path = props["Path"].as_str().expect("Path");
            let route = &props["RouteSettings"];
            if OTP_ROUTES.contains(&path) {
                // Then each OTP route is throttled by the pair-rate parameters
                assert_eq!(ref_target(&route["ThrottlingRateLimit"]), Some("ApiThrottleRate"), "{name:?}: {route:?}");
                assert_eq!(ref_target(&route["ThrottlingBurstLimit"]), Some("ApiThrottleBurst"), "{name:?}: {route:?}");
                otp_routes.push(path);
            } else {
                // And every other route keeps the API's default (no settings of its own)
                assert!(route.is_null(), "{name:?} ({path}) has route settings of its own: {route:?}");
            }
        }
    }
    otp_routes.sort_unstable();
    let mut want = OTP_ROUTES.to_vec();
    want.sort_unstable();
    assert_eq!(otp_routes, want, "every OTP route is an event, once");
    // And the default route settings (every other route, and any route added later) are the
    // protective parameters, so a flood there is answered 429 by API Gateway before it takes
    // the Lambda concurrency the OTP routes, workflow steps and callbacks need
    assert_eq!(ref_target(&settings["ThrottlingRateLimit"]), Some("ApiOtherThrottleRate"), "rate: {settings:?}");
    assert_eq!(ref_target(&settings["ThrottlingBurstLimit"]), Some("ApiOtherThrottleBurst"), "burst: {settings:?}");
    // And each parameter is a Number whose default throttles (0 would refuse every request),
    // whose minimum keeps a deployer from setting 0, and which says what it protects
    for name in ["ApiThrottleRate", "ApiThrottleBurst", "ApiOtherThrottleRate", "ApiOtherThrottleBurst"] {
        assert_eq!(parameter(name)["Type"].as_str(), Some("Number"), "{name}: {:?}", parameter(name));
        assert!(default(name) >= 1.0, "{name}: Default {}", default(name));
        assert!(parameter(name)["MinValue"].as_f64().is_some_and(|min| min >= 1.0), "{name}: MinValue >= 1");
        assert!(
            parameter(name)["Description"].as_str().is_some_and(|d| d.contains("concurrency")),
            "{name}: what it protects"
        );
    }
    // And by default send and verify each take 10,000 requests a second (an account's 10,000
    // pairs a second, issue 26, with no setting raised), which is also the most API Gateway's
    // default account quota lets a route be given (10,000 rps; burst 5,000)
    assert_eq!(default("ApiThrottleRate"), 10_000.0, "ApiThrottleRate default");
    let burst = default("ApiThrottleBurst");
    assert!((1_000.0..=5_000.0).contains(&burst), "ApiThrottleBurst default {burst}");
    // And the other routes' default stays far below the account's default Lambda concurrency
    // (1000), which the OTP routes, workflow steps and callbacks share with them
    assert!(default("ApiOtherThrottleRate") <= 1_000.0, "ApiOtherThrottleRate default");
    assert!(default("ApiOtherThrottleBurst") < 1_000.0, "ApiOtherThrottleBurst default");
}

#[test]
fn the_table_is_warm_from_its_first_second_at_what_the_parameters_say() {
    // Given the template's table
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml")).expect("template.yaml");
    let template: Value = serde_yaml::from_str(&text).expect("template.yaml parses");
    let warm = &template["Resources"]["TwofaTable"]["Properties"]["WarmThroughput"];
    // Then its warm throughput is the deployer's two parameters
    assert_eq!(ref_target(&warm["WriteUnitsPerSecond"]), Some("TableWarmWriteUnits"), "{warm:?}");
    assert_eq!(ref_target(&warm["ReadUnitsPerSecond"]), Some("TableWarmReadUnits"), "{warm:?}");
    // And by default above what a new on-demand table starts with (4,000 writes, 12,000
    // reads), never below it (DynamoDB only raises warm throughput)
    let default = |name: &str| template["Parameters"][name]["Default"].as_f64().unwrap_or(0.0);
    let min = |name: &str| template["Parameters"][name]["MinValue"].as_f64().unwrap_or(0.0);
    assert!(default("TableWarmWriteUnits") > 4000.0 && min("TableWarmWriteUnits") >= 4000.0);
    assert!(default("TableWarmReadUnits") >= 12000.0 && min("TableWarmReadUnits") >= 12000.0);
}

/// Every IAM statement of the template (functions' `Policies` and roles' `PolicyDocument`s),
/// with the statement list it is in.
fn statements(template: &Value) -> Vec<(&Value, &Vec<Value>)> {
    let mut out = vec![];
    for resource in template["Resources"].as_mapping().unwrap().values() {
        let policies = resource["Properties"]["Policies"].as_sequence().into_iter().flatten();
        for policy in policies {
            let document = if policy.get("PolicyDocument").is_some() { &policy["PolicyDocument"] } else { policy };
            if let Some(list) = document["Statement"].as_sequence() {
                out.extend(list.iter().map(|s| (s, list)));
            }
        }
    }
    out
}

fn actions(statement: &Value) -> Vec<&str> {
    match &statement["Action"] {
        Value::String(a) => vec![a.as_str()],
        Value::Sequence(list) => list.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    }
}

#[test]
fn no_function_can_write_an_account_or_send_email_but_as_the_deployments_identity() {
    // Given the template's IAM statements
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml")).expect("template.yaml");
    let template: Value = serde_yaml::from_str(&text).expect("template.yaml parses");
    let all = statements(&template);
    assert!(all.len() > 20, "statements found: {}", all.len());
    let writes = ["dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem"];
    for (statement, list) in &all {
        // When a statement allows a write to the table
        if statement["Effect"].as_str() != Some("Allow") || !actions(statement).iter().any(|a| writes.contains(a)) {
            continue;
        }
        // Then its keys are held away from ACCOUNT# (a LeadingKeys condition that names other
        // items only), or a Deny beside it refuses every write to an ACCOUNT# key
        let own = &statement["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"];
        let scoped = own.as_sequence().is_some_and(|keys| {
            !keys.is_empty()
                && keys.iter().all(|k| k.as_str().is_some_and(|k| !k.starts_with("ACCOUNT") && !k.starts_with('*')))
        });
        let denied = list.iter().any(|d| {
            d["Effect"].as_str() == Some("Deny")
                && writes.iter().all(|w| actions(d).contains(w))
                && d["Condition"]["ForAnyValue:StringLike"]["dynamodb:LeadingKeys"]
                    .as_sequence()
                    .is_some_and(|k| k.iter().any(|k| k.as_str() == Some("ACCOUNT#*")))
        });
        // Or (the console's account page) it updates only the settings of an account in
        // place: no put or delete, and an attribute list without the token hash, the
        // suspension or the account's place in the tree
        let attributes = &statement["Condition"]["ForAllValues:StringEquals"]["dynamodb:Attributes"];
        let settings_only =
            actions(statement).iter().all(|a| ["dynamodb:UpdateItem", "dynamodb:ConditionCheckItem"].contains(a))
                && attributes.as_sequence().is_some_and(|list| {
                    !list.is_empty()
                        && list.iter().all(|a| {
                            a.as_str().is_some_and(|a| {
                                !["token_hash", "suspended", "ancestors", "created_ms", "*"].contains(&a)
                                    && !a.starts_with("gsi")
                            })
                        })
                });
        assert!(scoped || denied || settings_only, "a statement may write accounts: {statement:?}");
    }
    // And email goes out only with ses:SendEmail, only as the SesIdentity parameter's identity
    let ses: Vec<&Value> =
        all.iter().map(|(s, _)| *s).filter(|s| actions(s).iter().any(|a| a.starts_with("ses:"))).collect();
    assert!(!ses.is_empty());
    for statement in ses {
        assert_eq!(actions(statement), ["ses:SendEmail"], "{statement:?}");
        let resources = format!("{:?}", statement["Resource"]);
        assert!(resources.contains("identity/${SesIdentity}") && !resources.contains("identity/*"), "{resources}");
    }
    assert_eq!(template["Parameters"]["SesIdentity"]["Default"].as_str(), Some("*"));
}

#[test]
fn the_sweeper_runs_every_slice_of_the_due_index_once_a_minute_and_no_more_at_once() {
    use twofa::{domain::callbacks::SWEEP_SLICES, workers::callbacks::slice_of};
    // Given the template's sweeper function
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml")).expect("template.yaml");
    let template: Value = serde_yaml::from_str(&text).expect("template.yaml parses");
    let sweeper = &template["Resources"]["SweeperFunction"]["Properties"];
    assert_eq!(sweeper["Environment"]["Variables"]["TWOFA_CALLBACKS_MODE"].as_str(), Some("sweep"));
    // When its events are read as the worker reads the invocations they make
    let events = sweeper["Events"].as_mapping().expect("the sweeper's Events");
    let mut slices = vec![];
    for (name, event) in events {
        // Then each is a schedule every minute whose input names a slice of `SWEEP_SLICES`
        assert_eq!(event["Type"].as_str(), Some("Schedule"), "{name:?}");
        let props = &event["Properties"];
        assert_eq!(props["Schedule"].as_str(), Some("rate(1 minute)"), "{name:?}");
        let input: serde_json::Value =
            serde_json::from_str(props["Input"].as_str().expect("an Input")).expect("the Input is JSON");
        let slice = slice_of(&input).unwrap_or_else(|e| panic!("{name:?}: {e}"));
        assert_eq!(slice.slices(), SWEEP_SLICES, "{name:?}: {input}");
        slices.push(slice.slice());
    }
    // And every slice has its schedule, once (no shard swept by none, none by two)
    slices.sort_unstable();
    assert_eq!(slices, (0..SWEEP_SLICES).collect::<Vec<_>>());
    // And as many sweeps may run at once as there are slices, never more
    assert_eq!(sweeper["ReservedConcurrentExecutions"].as_u64(), Some(SWEEP_SLICES as u64));
    // And each has the CPU for its writes in flight (more than the other functions' default)
    let default_memory = template["Globals"]["Function"]["MemorySize"].as_u64().expect("a default MemorySize");
    assert!(sweeper["MemorySize"].as_u64().is_some_and(|m| m >= 1024 && m > default_memory), "{sweeper:?}");
    // And a slice's invocation is its minute's only try: no retry, none started a minute late
    // (the next minute's sweep takes what is left), so one slice is not swept twice at once
    assert_eq!(sweeper["EventInvokeConfig"]["MaximumRetryAttempts"].as_u64(), Some(0));
    assert_eq!(sweeper["EventInvokeConfig"]["MaximumEventAgeInSeconds"].as_u64(), Some(60));
    // And the sweepers may still only read the due index and update OTP items
    let allowed: Vec<(Vec<&str>, String)> = sweeper["Policies"][0]["Statement"]
        .as_sequence()
        .expect("the sweeper's statements")
        .iter()
        .map(|s| {
            assert_eq!(s["Effect"].as_str(), Some("Allow"));
            (actions(s), format!("{:?} {:?}", s["Resource"], s["Condition"]))
        })
        .collect();
    assert_eq!(allowed.len(), 2, "{allowed:?}");
    assert_eq!(allowed[0].0, ["dynamodb:Query"]);
    assert!(allowed[0].1.contains("/index/gsi2"), "{allowed:?}");
    assert_eq!(allowed[1].0, ["dynamodb:UpdateItem"]);
    assert!(allowed[1].1.contains("OTP#*"), "{allowed:?}");
}

/// `value` as `!Tag inner`, if it is tagged `tag`.
fn tagged<'a>(value: &'a Value, tag: &str) -> Option<&'a Value> {
    match value {
        Value::Tagged(t) if t.tag == tag => Some(&t.value),
        _ => None,
    }
}

/// `!If [condition, then, else]` as its three parts.
fn if_parts(value: &Value) -> Option<(&str, &Value, &Value)> {
    let parts = tagged(value, "If")?.as_sequence()?;
    match parts.as_slice() {
        [condition, then, otherwise] => Some((condition.as_str()?, then, otherwise)),
        _ => None,
    }
}

fn is_no_value(value: &Value) -> bool {
    ref_target(value) == Some("AWS::NoValue")
}

#[test]
fn every_sms_sending_function_has_the_sns_route_always_and_end_user_messaging_with_an_origination_identity() {
    // Given the template
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml")).expect("template.yaml");
    let template: Value = serde_yaml::from_str(&text).expect("template.yaml parses");
    let resources = template["Resources"].as_mapping().expect("Resources");
    // When the functions that send (the ones told the default SMS route) are read
    let senders: Vec<(&str, &Value)> = resources
        .iter()
        .filter(|(_, r)| !r["Properties"]["Environment"]["Variables"]["TWOFA_SMS_ROUTE"].is_null())
        .map(|(id, r)| (id.as_str().expect("a logical id"), &r["Properties"]))
        .collect();
    let ids: Vec<&str> = senders.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, ["OtpFunction", "WorkflowStepFunction"], "the functions that send SMS");
    for (id, function) in &senders {
        let env = &function["Environment"]["Variables"];
        // Then SmsRoute only names the default route
        assert_eq!(ref_target(&env["TWOFA_SMS_ROUTE"]), Some("SmsRoute"), "{id}");
        // And the end-user-messaging route exists whenever an origination identity is given
        let (condition, then, otherwise) =
            if_parts(&env["TWOFA_SMS_ORIGINATION_IDENTITY"]).unwrap_or_else(|| panic!("{id}: an !If"));
        assert_eq!((condition, ref_target(then)), ("HasSmsOriginationIdentity", Some("SmsOriginationIdentity")));
        assert!(is_no_value(otherwise), "{id}: {otherwise:?}");
        let (condition, _, otherwise) =
            if_parts(&env["TWOFA_SMS_CONFIGURATION_SET"]).unwrap_or_else(|| panic!("{id}: an !If"));
        assert_eq!(condition, "HasSmsOriginationIdentity", "{id}");
        assert!(is_no_value(otherwise), "{id}: {otherwise:?}");
        let list = function["Policies"][0]["Statement"].as_sequence().expect("statements");
        // And it may publish SMS through SNS whatever the parameters (an unconditional
        // statement: any account's routing table may name sns)
        let sns: Vec<&Value> = list.iter().filter(|s| actions(s).contains(&"sns:Publish")).collect();
        assert_eq!(sns.len(), 1, "{id}: one sns:Publish statement, not under a condition");
        assert_eq!((sns[0]["Effect"].as_str(), actions(sns[0])), (Some("Allow"), vec!["sns:Publish"]), "{id}");
        // And it may call SendTextMessage only with an origination identity, and nothing else
        // of End User Messaging SMS with that statement
        let texts: Vec<&Value> = list
            .iter()
            .filter_map(|s| if_parts(s))
            .filter(|(_, then, _)| actions(then).contains(&"sms-voice:SendTextMessage"))
            .map(|(condition, then, otherwise)| {
                assert_eq!(condition, "HasSmsOriginationIdentity", "{id}");
                assert!(is_no_value(otherwise), "{id}: {otherwise:?}");
                then
            })
            .collect();
        assert_eq!(texts.len(), 1, "{id}: one SendTextMessage statement");
        assert_eq!(actions(texts[0]), ["sms-voice:SendTextMessage"], "{id}");
        let resources = format!("{:?}", texts[0]["Resource"]);
        assert!(!resources.contains(":*\"") && resources.contains("configuration-set/${Set}"), "{id}: {resources}");
        assert!(!list.iter().any(|s| actions(s).contains(&"sms-voice:SendTextMessage")), "{id}: unconditional");
    }
    // And the condition is the identity's presence; no condition depends on the default route
    let conditions = &template["Conditions"];
    assert_eq!(
        format!("{:?}", conditions["HasSmsOriginationIdentity"]),
        format!("{:?}", serde_yaml::from_str::<Value>(r#"!Not [!Equals [!Ref SmsOriginationIdentity, ""]]"#).unwrap())
    );
    assert!(!format!("{conditions:?}").contains("SmsRoute"), "{conditions:?}");
    // And the stack's own configuration set (the receipts' event destination) exists with the
    // route when no other set is given
    assert_eq!(
        template["Resources"]["SmsTextConfigurationSet"]["Condition"].as_str(),
        Some("UsesStackSmsConfigurationSet")
    );
    let uses = format!("{:?}", conditions["UsesStackSmsConfigurationSet"]);
    assert!(uses.contains("HasSmsOriginationIdentity") && uses.contains("HasSmsConfigurationSet"), "{uses}");
    // And SmsRoute=end-user-messaging without an identity is refused before anything is made
    let rule = &template["Rules"]["EndUserMessagingRouteNeedsOriginationIdentity"];
    let condition = format!("{:?}", rule["RuleCondition"]);
    assert!(condition.contains("SmsRoute") && condition.contains("end-user-messaging"), "{condition}");
    let assertion = format!("{:?}", rule["Assertions"][0]["Assert"]);
    assert!(assertion.contains("Not") && assertion.contains("SmsOriginationIdentity"), "{assertion}");
    // And the default stays sns, which needs nothing more
    assert_eq!(template["Parameters"]["SmsRoute"]["Default"].as_str(), Some("sns"));
}

#[test]
fn the_factors_function_sends_nothing_and_writes_only_factors_and_what_a_challenge_commits() {
    // Given the template's factors function and the OTP function
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml")).expect("template.yaml");
    let template: Value = serde_yaml::from_str(&text).expect("template.yaml parses");
    let function = &template["Resources"]["FactorsFunction"]["Properties"];
    let list = function["Policies"][0]["Statement"].as_sequence().expect("the factors function's statements");
    // When its statements are read
    for statement in list {
        assert_eq!(statement["Effect"].as_str(), Some("Allow"), "{statement:?}");
        // Then it may touch only the table and read the master secret: no SNS, SES, SMS Voice,
        // Social messaging, Polly or Step Functions (a challenge sends nothing)
        for action in actions(statement) {
            assert!(
                action.starts_with("dynamodb:") || action == "secretsmanager:GetSecretValue",
                "{action}: the factors function sends nothing"
            );
        }
    }
    assert!(function["Environment"]["Variables"]["TWOFA_WORKFLOW_STATE_MACHINE_ARN"].is_null());
    // And its writes go to its factors and to the items a send's admission commits, never
    // elsewhere (accounts, limits, workflows, the console's)
    let writes = ["dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:TransactWriteItems"];
    let writing: Vec<&Value> = list.iter().filter(|s| actions(s).iter().any(|a| writes.contains(a))).collect();
    assert_eq!(writing.len(), 1, "{writing:?}");
    let keys: Vec<&str> = writing[0]["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"]
        .as_sequence()
        .expect("writes scoped by leading key")
        .iter()
        .map(|k| k.as_str().unwrap())
        .collect();
    assert_eq!(keys, ["FACTOR#*", "OTP#*", "DEST#*", "CTR#*", "IDEM#*", "USAGE#*", "INSIGHT#*"]);
    // And the OTP function, which closes a challenge (verify uses the factor's time step),
    // may read and update a factor: its table statement is not held to other keys
    let otp = template["Resources"]["OtpFunction"]["Properties"]["Policies"][0]["Statement"]
        .as_sequence()
        .expect("the OTP function's statements");
    let table = otp.iter().find(|s| s["Sid"].as_str() == Some("Table")).expect("its Table statement");
    assert!(["dynamodb:GetItem", "dynamodb:UpdateItem"].iter().all(|a| actions(table).contains(a)), "{table:?}");
    assert!(table["Condition"].is_null(), "{table:?}");
}

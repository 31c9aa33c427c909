//! The queries of the conformance suite: what the API must answer about the data
//! set of [`super::data`], written out by hand.

use std::collections::BTreeMap;

use monitoring_common::Severity;

use super::*;
use crate::storage::{FlowQuery, MetricQuery, Order};

pub(super) fn logs_all_and_order(store: &dyn Store) {
    let desc = logs(store, all());
    assert_eq!(desc.len(), 10, "every log once: {:?}", messages(&desc));
    let times: Vec<i64> = desc.iter().map(|r| r.timestamp_ns).collect();
    assert!(
        times.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {times:?}"
    );
    assert_eq!(desc[0].message, "say \"hi\" to O'Brien; 100% done");
    let asc = logs(
        store,
        LogQuery {
            order: Order::Asc,
            ..all()
        },
    );
    assert_eq!(asc[0].message, "Connection refused by upstream");
    let times: Vec<i64> = asc.iter().map(|r| r.timestamp_ns).collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "oldest first: {times:?}"
    );

    let first = &asc[0];
    assert_eq!(first.agent_id, "web");
    assert_eq!(first.source, APP);
    assert_eq!(first.timestamp_ns, at(10));
    assert_eq!(first.severity.as_deref(), Some("error"));
    assert_eq!(first.labels, labels(&[("env", "test")]));
    assert_eq!(
        first.fields.get("offset"),
        Some(&serde_json::json!(10)),
        "fields as JSON"
    );
    let unknown = asc.iter().find(|r| r.source == AUTH && r.agent_id == "web");
    assert_eq!(unknown.and_then(|r| r.severity.clone()), None);
}

pub(super) fn logs_filters(store: &dyn Store) {
    let by = |query: LogQuery| message_set(&logs(store, query));
    assert_eq!(
        by(LogQuery {
            agent: Some("db".into()),
            ..all()
        }),
        ["connection reset", "session opened for user postgres"]
    );
    assert_eq!(
        by(LogQuery {
            source: Some(AUTH.into()),
            ..all()
        }),
        [
            "Accepted password for root",
            "session opened for user postgres"
        ]
    );
    // Warning or worse; logs without a severity are left out.
    assert_eq!(
        by(LogQuery {
            max_severity_code: Some(Severity::Warning.code()),
            ..all()
        }),
        [
            "Connection refused by upstream",
            "ERROR: disk full -> retrying",
            "connection reset",
            "say \"hi\" to O'Brien; 100% done",
        ]
    );
    // from inclusive, to exclusive.
    assert_eq!(
        by(LogQuery {
            from_ns: Some(at(20)),
            to_ns: Some(at(30)),
            ..all()
        }),
        [
            "login user-1 ok",
            "login user12 ok",
            "login user_1 again",
            "session opened for user postgres"
        ]
    );
    assert!(
        by(LogQuery {
            agent: Some("nobody".into()),
            ..all()
        })
        .is_empty()
    );
    assert!(logs(store, LogQuery { limit: 0, ..all() }).is_empty());
}

pub(super) fn logs_text(store: &dyn Store) {
    let search = |q: &str| {
        message_set(&logs(
            store,
            LogQuery {
                text: Some(q.into()),
                ..all()
            },
        ))
    };
    // Case-insensitive whole tokens.
    assert_eq!(search("REFUSED"), ["Connection refused by upstream"]);
    assert_eq!(
        search("connection"),
        ["Connection refused by upstream", "connection reset"]
    );
    // Tokens in order, separated only by non-token characters.
    assert_eq!(search("user-1"), ["login user-1 ok", "login user_1 again"]);
    assert_eq!(search("user12"), ["login user12 ok"]);
    // A prefix.
    assert_eq!(
        search("conn*"),
        [
            "Café au lait: connexion établie",
            "Connection refused by upstream",
            "connection reset"
        ]
    );
    // Every word must match.
    assert_eq!(search("login ok"), ["login user-1 ok", "login user12 ok"]);
    assert!(search("login postgres").is_empty());
    // Punctuation is never syntax.
    assert_eq!(
        search("O'Brien; \"hi\""),
        ["say \"hi\" to O'Brien; 100% done"]
    );
    assert_eq!(search("100%"), ["say \"hi\" to O'Brien; 100% done"]);
    // Text without a token is a substring.
    assert_eq!(search("->"), ["ERROR: disk full -> retrying"]);
    assert!(search("=>").is_empty());
    // Letters beyond ASCII.
    assert_eq!(search("établie"), ["Café au lait: connexion établie"]);
}

pub(super) fn logs_paging(store: &dyn Store) {
    for order in [Order::Desc, Order::Asc] {
        let whole = logs(store, LogQuery { order, ..all() });
        let mut paged = Vec::new();
        let mut cursor = None;
        for _ in 0..20 {
            let page = store
                .query_logs(&LogQuery {
                    limit: 2,
                    cursor: cursor.clone(),
                    order,
                    ..all()
                })
                .expect("page");
            assert!(page.logs.len() <= 2);
            paged.extend(page.logs);
            cursor = page.next_cursor;
            if cursor.is_none() {
                break;
            }
        }
        assert!(cursor.is_none(), "{order:?}: paging did not end");
        assert_eq!(
            messages(&paged),
            messages(&whole),
            "{order:?}: pages of 2 give the whole list, in order, each once"
        );
    }
    // A page within a filter and a time window.
    let window = LogQuery {
        agent: Some("web".into()),
        from_ns: Some(at(20)),
        order: Order::Asc,
        ..all()
    };
    let first = store
        .query_logs(&LogQuery {
            limit: 2,
            ..window.clone()
        })
        .expect("first page");
    let rest = store
        .query_logs(&LogQuery {
            limit: 100,
            cursor: first.next_cursor.clone(),
            ..window
        })
        .expect("rest");
    let mut both = first.logs.clone();
    both.extend(rest.logs);
    assert_eq!(both.len(), 7, "{:?}", messages(&both));
    assert_eq!(rest.next_cursor, None);
    let bad = store.query_logs(&LogQuery {
        cursor: Some("not a cursor".into()),
        ..all()
    });
    assert!(
        matches!(bad, Err(crate::storage::StorageError::BadQuery(_))),
        "a bad cursor is a bad query: {bad:?}"
    );
}

fn metric_query(name: &str) -> MetricQuery {
    MetricQuery {
        name: name.into(),
        from_ns: at(0),
        to_ns: at(3600),
        ..MetricQuery::default()
    }
}

/// Agent `web`'s `host_cpu_usage_percent{cpu}` from `from` to `to` seconds.
fn web_cpu(cpu: &str, from: i64, to: i64) -> MetricQuery {
    MetricQuery {
        agent: Some("web".into()),
        labels: BTreeMap::from([("cpu".to_string(), cpu.to_string())]),
        from_ns: at(from),
        to_ns: at(to),
        ..metric_query("host_cpu_usage_percent")
    }
}

pub(super) fn metric_series(store: &dyn Store) {
    let series = store
        .query_metrics(&metric_query("host_cpu_usage_percent"))
        .expect("metrics");
    let keys: Vec<(&str, Option<&String>)> = series
        .iter()
        .map(|s| (s.agent_id.as_str(), s.labels.get("cpu")))
        .collect();
    assert_eq!(series.len(), 3, "db total, web 0, web total: {keys:?}");
    let web_total = series
        .iter()
        .find(|s| s.agent_id == "web" && s.labels.get("cpu").map(String::as_str) == Some("total"))
        .expect("web total");
    assert_eq!(web_total.kind, "gauge");
    assert_eq!(web_total.name, "host_cpu_usage_percent");
    let want: Vec<(i64, f64)> = (0..6)
        .map(|i| (at(i * 10) / MS, (i + 1) as f64 * 10.0))
        .collect();
    assert_eq!(web_total.points, want, "raw points in ms, oldest first");

    // Filters: agent, labels, time range (to exclusive).
    let filtered = store
        .query_metrics(&web_cpu("0", 10, 30))
        .expect("filtered");
    assert_eq!(filtered.len(), 1);
    assert_eq!(
        filtered[0].points,
        [(at(10) / MS, 21.0), (at(20) / MS, 31.0)]
    );
    let none = store
        .query_metrics(&MetricQuery {
            labels: BTreeMap::from([("cpu".to_string(), "7".to_string())]),
            ..metric_query("host_cpu_usage_percent")
        })
        .expect("no match");
    assert!(none.is_empty());

    let one = |name: &str| {
        let s = store.query_metrics(&metric_query(name)).expect(name);
        assert_eq!(s.len(), 1, "{name}: one series");
        s.into_iter().next().expect("one")
    };
    let counter = one("requests_total");
    assert_eq!(
        (counter.kind.as_str(), counter.points.as_slice()),
        ("counter", &[(at(30) / MS, 1234.0)][..])
    );
    let histogram = one("latency_seconds");
    assert_eq!(histogram.kind, "histogram");
    assert_eq!(
        histogram.points,
        [(at(30) / MS, 2.5)],
        "histograms give their sum"
    );
    let summary = one("rpc_seconds");
    assert_eq!(
        (summary.kind.as_str(), summary.points.as_slice()),
        ("summary", &[(at(30) / MS, 7.0)][..])
    );
    let temperature = one("temperature");
    assert_eq!(
        temperature.points,
        [(at(36) / MS, 21.5)],
        "a NaN sample has no value"
    );
}

pub(super) fn metric_steps(store: &dyn Store) {
    let series = store
        .query_metrics(&MetricQuery {
            step_ns: Some(20 * SEC),
            ..web_cpu("total", 5, 65)
        })
        .expect("steps");
    assert_eq!(series.len(), 1);
    // Buckets [5,25) [25,45) [45,65): samples 20,30 | 40,50 | 60.
    assert_eq!(
        series[0].points,
        [(at(5) / MS, 25.0), (at(25) / MS, 45.0), (at(45) / MS, 60.0)]
    );
    let bad = store.query_metrics(&MetricQuery {
        step_ns: Some(0),
        ..metric_query("host_cpu_usage_percent")
    });
    assert!(
        matches!(bad, Err(crate::storage::StorageError::BadQuery(_))),
        "step 0: {bad:?}"
    );
    let empty = store
        .query_metrics(&MetricQuery {
            from_ns: at(10),
            to_ns: at(10),
            ..metric_query("host_cpu_usage_percent")
        })
        .expect("empty range");
    assert!(empty.is_empty());
}

pub(super) fn flows(store: &dyn Store) {
    let query = |q: FlowQuery| store.query_flows(&q).expect("flows");
    let all = FlowQuery {
        limit: 100,
        ..FlowQuery::default()
    };
    let every = query(all.clone());
    let keys: Vec<(i64, &str, &str)> = every
        .iter()
        .map(|f| (f.timestamp_ns, f.src_addr.as_str(), f.dst_addr.as_str()))
        .collect();
    assert_eq!(
        keys,
        [
            (at(120), "10.0.0.2", "10.0.0.1"),
            (at(110), "::1", "::1"),
            (at(100), "10.0.0.1", "10.0.0.2"),
            (at(100), "10.0.0.1", "10.0.0.3"),
        ],
        "newest first, then by addresses"
    );
    let f = &every[2];
    assert_eq!(
        (f.src_port, f.dst_port, f.protocol, f.bytes_out, f.bytes_in),
        (40000, 443, 6, 5000, 2500)
    );
    assert_eq!((f.packets_out, f.packets_in, f.tcp_flags), (3, 2, 0x12));
    assert_eq!(
        (f.end_ns, f.agent_id.as_str(), f.source.as_str()),
        (at(110), "web", "lo")
    );

    let count = |q: FlowQuery| query(q).len();
    assert_eq!(
        count(FlowQuery {
            addr: Some("10.0.0.2".into()),
            ..all.clone()
        }),
        2
    );
    assert_eq!(
        count(FlowQuery {
            port: Some(443),
            ..all.clone()
        }),
        2
    );
    assert_eq!(
        count(FlowQuery {
            protocol: Some(17),
            ..all.clone()
        }),
        1
    );
    assert_eq!(
        count(FlowQuery {
            agent: Some("db".into()),
            ..all.clone()
        }),
        0
    );
    assert_eq!(
        count(FlowQuery {
            from_ns: Some(at(100)),
            to_ns: Some(at(110)),
            ..all.clone()
        }),
        2
    );
    assert_eq!(count(FlowQuery { limit: 1, ..all }), 1);
}

pub(super) fn catalogue_and_inventory(store: &dyn Store, received: i64) {
    assert_eq!(
        store.metric_names().expect("names"),
        [
            "host_cpu_usage_percent",
            "host_info",
            "host_memory_usage_percent",
            "latency_seconds",
            "requests_total",
            "rpc_seconds",
            "temperature"
        ]
    );
    let agents = store.agents().expect("agents");
    let ids: Vec<&str> = agents.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(ids, ["db", "web"]);
    let web = &agents[1];
    assert_eq!(web.hostname.as_deref(), Some("web-1"));
    assert_eq!(web.os.as_deref(), Some("Debian GNU/Linux 12"));
    assert_eq!(web.kernel_version.as_deref(), Some("6.1.0"));
    assert_eq!(
        web.last_seen_ns,
        received + SEC,
        "a resent batch counts as seen"
    );
    assert_eq!(web.cpu_percent, Some(60.0), "the latest total sample");
    assert_eq!(
        web.memory_percent,
        Some(42.5),
        "the latest sample, not the last sent"
    );
    let db = &agents[0];
    assert_eq!(db.last_seen_ns, received + 2);
    assert_eq!((db.hostname.as_deref(), db.cpu_percent), (None, Some(5.0)));
    store.health().expect("a healthy store");
}

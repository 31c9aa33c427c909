//! Table-driven tests of the exposition parser: valid bodies in both formats with
//! every metric type, and malformed ones with the line they must name.

#![allow(clippy::unwrap_used)] // Tests may unwrap.

use monitoring_common::event::{Labels, MetricValue};

use super::{ExpositionError, Format, Sample, parse};

const LIMIT: usize = 10_000;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn gauge(name: &str, l: &[(&str, &str)], value: f64) -> Sample {
    Sample {
        name: name.into(),
        labels: labels(l),
        value: MetricValue::Gauge { value },
        timestamp_ms: None,
    }
}

fn counter(name: &str, l: &[(&str, &str)], value: f64) -> Sample {
    Sample {
        value: MetricValue::Counter { value },
        ..gauge(name, l, 0.0)
    }
}

fn ok(text: &str, format: Format) -> Vec<Sample> {
    parse(text, format, LIMIT).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

#[test]
fn counters_gauges_and_untyped_in_0_0_4() {
    let text = "# HELP http_requests_total The total number of HTTP requests.\n\
                # TYPE http_requests_total counter\n\
                http_requests_total{method=\"post\",code=\"200\"} 1027 1395066363000\n\
                http_requests_total{method=\"post\",code=\"400\"}    3 1395066363000\n\
                \n\
                # A free comment\n\
                # TYPE temperature gauge\n\
                temperature -3.5e-1\n\
                no_type_here{a=\"b\",} 12\n\
                \ttabbed\t7\n";
    let samples = ok(text, Format::Prometheus);
    assert_eq!(samples.len(), 5);
    assert_eq!(
        samples[0],
        Sample {
            timestamp_ms: Some(1_395_066_363_000),
            ..counter(
                "http_requests_total",
                &[("method", "post"), ("code", "200")],
                1027.0
            )
        }
    );
    assert_eq!(samples[2], gauge("temperature", &[], -0.35));
    assert_eq!(samples[3], gauge("no_type_here", &[("a", "b")], 12.0));
    assert_eq!(samples[4], gauge("tabbed", &[], 7.0));
}

#[test]
fn special_values_and_escapes() {
    let text = "a +Inf\nb -Inf\nc NaN\nd 1.5e+06\n\
                msdos_file_access_time_seconds{path=\"C:\\\\DIR\\\\FILE.TXT\",error=\"Cannot find file:\\n\\\"FILE.TXT\\\"\"} 1.458255915e9\n";
    let samples = ok(text, Format::Prometheus);
    assert!(matches!(samples[0].value, MetricValue::Gauge { value } if value == f64::INFINITY));
    assert!(matches!(samples[1].value, MetricValue::Gauge { value } if value == f64::NEG_INFINITY));
    assert!(matches!(samples[2].value, MetricValue::Gauge { value } if value.is_nan()));
    assert_eq!(samples[3], gauge("d", &[], 1_500_000.0));
    assert_eq!(samples[4].labels["path"], "C:\\DIR\\FILE.TXT");
    assert_eq!(
        samples[4].labels["error"],
        "Cannot find file:\n\"FILE.TXT\""
    );
}

#[test]
fn histograms_group_their_buckets_sum_and_count() {
    let text = "# TYPE http_request_duration_seconds histogram\n\
                http_request_duration_seconds_bucket{le=\"0.05\",path=\"/\"} 24054\n\
                http_request_duration_seconds_bucket{path=\"/\",le=\"0.1\"} 33444\n\
                http_request_duration_seconds_bucket{path=\"/x\",le=\"+Inf\"} 2\n\
                http_request_duration_seconds_bucket{path=\"/\",le=\"+Inf\"} 144320\n\
                http_request_duration_seconds_sum{path=\"/\"} 53423\n\
                http_request_duration_seconds_count{path=\"/\"} 144320\n";
    let samples = ok(text, Format::Prometheus);
    assert_eq!(samples.len(), 2, "{samples:?}");
    assert_eq!(samples[0].name, "http_request_duration_seconds");
    assert_eq!(samples[0].labels, labels(&[("path", "/")]));
    assert_eq!(
        samples[0].value,
        MetricValue::Histogram {
            count: 144_320,
            sum: 53423.0,
            buckets: vec![(0.05, 24054), (0.1, 33444), (f64::INFINITY, 144_320)],
        }
    );
    // No _count line: the +Inf bucket holds the count.
    assert_eq!(
        samples[1].value,
        MetricValue::Histogram {
            count: 2,
            sum: 0.0,
            buckets: vec![(f64::INFINITY, 2)],
        }
    );
}

#[test]
fn summaries_group_their_quantiles() {
    let text = "# TYPE rpc_duration_seconds summary\n\
                rpc_duration_seconds{quantile=\"0.01\"} 3102\n\
                rpc_duration_seconds{quantile=\"0.5\"} 4773\n\
                rpc_duration_seconds{quantile=\"0.99\"} 76656\n\
                rpc_duration_seconds_sum 1.7560473e+07\n\
                rpc_duration_seconds_count 2693\n";
    let samples = ok(text, Format::Prometheus);
    assert_eq!(
        samples,
        vec![Sample {
            name: "rpc_duration_seconds".into(),
            labels: Labels::new(),
            value: MetricValue::Summary {
                count: 2693,
                sum: 17_560_473.0,
                quantiles: vec![(0.01, 3102.0), (0.5, 4773.0), (0.99, 76656.0)],
            },
            timestamp_ms: None,
        }]
    );
}

#[test]
fn openmetrics_with_every_type_exemplars_and_eof() {
    let text = "# TYPE acme_http_router_request_seconds summary\n\
                # UNIT acme_http_router_request_seconds seconds\n\
                # HELP acme_http_router_request_seconds Latency though all of ACME's HTTP request router.\n\
                acme_http_router_request_seconds_sum{path=\"/api/v1\",method=\"GET\"} 9036.32\n\
                acme_http_router_request_seconds_count{path=\"/api/v1\",method=\"GET\"} 807283.0\n\
                acme_http_router_request_seconds_created{path=\"/api/v1\",method=\"GET\"} 1605281325.0\n\
                # TYPE go_goroutines gauge\n\
                go_goroutines 69 1605281325.5\n\
                # TYPE process_cpu_seconds counter\n\
                process_cpu_seconds_total 4.20072246e+06\n\
                # TYPE lat histogram\n\
                lat_bucket{le=\"0.5\"} 1 # {trace_id=\"KOO5S4vxi0o\"} 0.67\n\
                lat_bucket{le=\"+Inf\"} 3\n\
                lat_count 3\n\
                lat_sum 4.2\n\
                # TYPE queue gaugehistogram\n\
                queue_bucket{le=\"1\"} 5\n\
                queue_bucket{le=\"+Inf\"} 9\n\
                queue_gcount 9\n\
                queue_gsum 11\n\
                # TYPE build info\n\
                build_info{version=\"1.2\"} 1\n\
                # TYPE feature stateset\n\
                feature{feature=\"a\"} 1\n\
                feature{feature=\"b\"} 0\n\
                # TYPE other unknown\n\
                other 3\n\
                # EOF\n";
    let samples = ok(text, Format::OpenMetrics);
    let names: Vec<&str> = samples.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "acme_http_router_request_seconds",
            "acme_http_router_request_seconds_created",
            "go_goroutines",
            "process_cpu_seconds_total",
            "lat",
            "queue",
            "build_info",
            "feature",
            "feature",
            "other"
        ]
    );
    assert_eq!(
        samples[0].value,
        MetricValue::Summary {
            count: 807_283,
            sum: 9036.32,
            quantiles: vec![]
        }
    );
    assert_eq!(samples[2].timestamp_ms, Some(1_605_281_325_500));
    assert_eq!(
        samples[3].value,
        MetricValue::Counter {
            value: 4_200_722.46
        }
    );
    assert_eq!(
        samples[4].value,
        MetricValue::Histogram {
            count: 3,
            sum: 4.2,
            buckets: vec![(0.5, 1), (f64::INFINITY, 3)]
        }
    );
    assert_eq!(
        samples[5].value,
        MetricValue::Histogram {
            count: 9,
            sum: 11.0,
            buckets: vec![(1.0, 5), (f64::INFINITY, 9)]
        }
    );
    assert_eq!(samples[6], gauge("build_info", &[("version", "1.2")], 1.0));
    assert_eq!(samples[8], gauge("feature", &[("feature", "b")], 0.0));
}

#[test]
fn content_type_selects_the_format() {
    assert_eq!(Format::from_content_type(None), Format::Prometheus);
    assert_eq!(
        Format::from_content_type(Some("text/plain; version=0.0.4; charset=utf-8")),
        Format::Prometheus
    );
    assert_eq!(
        Format::from_content_type(Some("application/openmetrics-text; version=1.0.0")),
        Format::OpenMetrics
    );
}

#[test]
fn malformed_expositions_name_their_line() {
    // (body, format, line, part of the message)
    let cases: &[(&str, Format, usize, &str)] = &[
        ("ok 1\n9bad 1\n", Format::Prometheus, 2, "metric name"),
        ("a{b=\"c\" 1\n", Format::Prometheus, 1, "expected ','"),
        ("a{b=c} 1\n", Format::Prometheus, 1, "not quoted"),
        ("a{b=\"c} 1\n", Format::Prometheus, 1, "unterminated"),
        ("a{b=\"\\x\"} 1\n", Format::Prometheus, 1, "invalid escape"),
        ("a{b=\"1\",b=\"2\"} 1\n", Format::Prometheus, 1, "twice"),
        ("a{1b=\"c\"} 1\n", Format::Prometheus, 1, "label name"),
        ("a{b} 1\n", Format::Prometheus, 1, "no '='"),
        ("a\n", Format::Prometheus, 1, "no value"),
        ("a one\n", Format::Prometheus, 1, "invalid value"),
        ("a 1 12.5\n", Format::Prometheus, 1, "invalid timestamp"),
        ("a 1 2 3\n", Format::Prometheus, 1, "after the value"),
        (
            "a 1 # {x=\"y\"} 1\n",
            Format::Prometheus,
            1,
            "after the value",
        ),
        ("# TYPE a\n", Format::Prometheus, 1, "without a type"),
        ("# TYPE a countr\n", Format::Prometheus, 1, "unknown type"),
        (
            "# TYPE a gauge\n# TYPE a gauge\n",
            Format::Prometheus,
            2,
            "second # TYPE",
        ),
        (
            "a 1\n# TYPE a gauge\n",
            Format::Prometheus,
            2,
            "after its samples",
        ),
        (
            "# TYPE h histogram\nh_bucket 1\n",
            Format::Prometheus,
            2,
            "no \"le\"",
        ),
        (
            "# TYPE h histogram\nh_bucket{le=\"x\"} 1\n",
            Format::Prometheus,
            2,
            "invalid le",
        ),
        (
            "# TYPE h histogram\nh_bucket{le=\"1\"} -1\n",
            Format::Prometheus,
            2,
            "not a count",
        ),
        (
            "# TYPE h histogram\nh_count NaN\n",
            Format::Prometheus,
            2,
            "not a count",
        ),
        (
            "# TYPE s summary\ns 1\n",
            Format::Prometheus,
            2,
            "no \"quantile\"",
        ),
        ("a 1\n# EOF\nb 2\n", Format::OpenMetrics, 3, "after # EOF"),
        (
            "a 1 x\n# EOF\n",
            Format::OpenMetrics,
            1,
            "invalid timestamp",
        ),
    ];
    for (body, format, line, needle) in cases {
        match parse(body, *format, LIMIT) {
            Err(ExpositionError::Line { line: l, message }) => {
                assert_eq!(l, *line, "{body:?}: {message}");
                assert!(
                    message.contains(needle),
                    "{body:?}: {message:?} lacks {needle:?}"
                );
            }
            other => panic!("{body:?}: expected an error on line {line}, got {other:?}"),
        }
    }
}

#[test]
fn truncated_openmetrics_and_sample_limit_fail_the_scrape() {
    assert_eq!(
        parse("a 1\n", Format::OpenMetrics, LIMIT),
        Err(ExpositionError::MissingEof)
    );
    let many: String = (0..11).map(|i| format!("m{{i=\"{i}\"}} 1\n")).collect();
    assert_eq!(
        parse(&many, Format::Prometheus, 10),
        Err(ExpositionError::TooManySamples { limit: 10 })
    );
    assert_eq!(ok(&many, Format::Prometheus).len(), 11);
}

#[test]
fn crlf_line_ends_and_an_empty_body() {
    assert_eq!(ok("a 1\r\nb 2\r\n", Format::Prometheus).len(), 2);
    assert!(ok("", Format::Prometheus).is_empty());
}

proptest::proptest! {
    /// Whatever an exporter sends, parsing returns (a scrape error at worst).
    #[test]
    fn never_panics(body in "[a-z_{}=\",#+. \\\\\n0-9eEINaf-]{0,200}") {
        for format in [Format::Prometheus, Format::OpenMetrics] {
            drop(parse(&body, format, 100));
        }
    }

    /// Generated gauges come back with their names, labels and values.
    #[test]
    fn generated_gauges_round_trip(
        series in proptest::collection::vec(("[a-z_][a-z0-9_]{0,8}", "[ -~]{0,12}", -1e12f64..1e12), 1..20)
    ) {
        let mut body = String::new();
        for (i, (name, value, number)) in series.iter().enumerate() {
            let escaped = value.replace('\\', "\\\\").replace('"', "\\\"");
            body.push_str(&format!("{name}{{l=\"{escaped}\",i=\"{i}\"}} {number}\n"));
        }
        let samples = parse(&body, Format::Prometheus, 100).unwrap();
        proptest::prop_assert_eq!(samples.len(), series.len());
        for (sample, (name, value, number)) in samples.iter().zip(&series) {
            proptest::prop_assert_eq!(&sample.name, name);
            proptest::prop_assert_eq!(&sample.labels["l"], value);
            proptest::prop_assert_eq!(&sample.value, &MetricValue::Gauge { value: *number });
        }
    }
}

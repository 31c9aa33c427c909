//! TLS to PostgreSQL: against a private server with `ssl=on` (see
//! `private_server`), `sslmode=require` with `tls_ca` set to its CA passes the
//! conformance suite over encrypted connections, and a certificate from another
//! CA is refused with an error that says so; `sslmode=disable` still works against
//! the shared server.

use std::time::Instant;

use super::private_server::{PrivateServer, make_ca};
use super::{PostgresConfig, PostgresStore, TestDb};

fn config(url: String, ca: Option<std::path::PathBuf>) -> PostgresConfig {
    PostgresConfig {
        url,
        tls_ca: ca,
        retention_days: 7,
        pool_size: 4,
        timeout_ms: 10_000,
        text_index: true,
    }
}

/// `url` with one more query option.
fn with_option(url: &str, option: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{option}")
}

#[test]
fn tls_to_a_private_server_verifies_and_encrypts() {
    let started = Instant::now();
    let server = PrivateServer::start();
    println!("private server up in {:?}", started.elapsed());
    let ca = server.write_file("ca.pem", &server.ca_pem);

    // The right CA: the whole suite, every pooled connection encrypted.
    let good = config(server.url("sslmode=require"), Some(ca.clone()));
    assert!(good.validate().is_empty(), "{:?}", good.validate());
    let store = PostgresStore::open(&good).expect("opening over TLS");
    crate::storage::conformance::check(&store);
    // Fill the pool: each of four callers holds a connection until all have one.
    let all_lent = std::sync::Barrier::new(4);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                store
                    .pool
                    .run(|conn| {
                        all_lent.wait();
                        conn.client.query_one("SELECT 1", &[])
                    })
                    .unwrap()
            });
        }
    });
    let (connections, encrypted): (i64, i64) = store
        .pool
        .run(|conn| {
            let row = conn.client.query_one(
                "SELECT count(*), count(*) FILTER (WHERE s.ssl)
                 FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
                 WHERE a.application_name = 'monitoring-collector'",
                &[],
            )?;
            Ok((row.get(0), row.get(1)))
        })
        .unwrap();
    println!("pool connections: {connections}, encrypted: {encrypted}");
    assert_eq!(connections, 4, "the pool's four connections");
    assert_eq!(connections, encrypted, "every pooled connection uses TLS");
    drop(store);

    // `prefer` (the default) takes the TLS the server offers, verified alike.
    let prefer =
        PostgresStore::open(&config(server.url("sslmode=prefer"), Some(ca.clone()))).unwrap();
    let ssl: bool = prefer
        .pool
        .run(|conn| {
            conn.client
                .query_one(
                    "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                    &[],
                )
                .map(|row| row.get(0))
        })
        .unwrap();
    assert!(ssl, "sslmode=prefer uses the TLS the server offers");
    drop(prefer);

    // Another CA: refused, saying why, and the password never shows.
    let (other_pem, _) = make_ca("some other CA");
    let other = server.write_file("other-ca.pem", &other_pem);
    let url = server
        .url("sslmode=require")
        .replace("postgres@", "postgres:s3cret-pw@");
    for mode in ["sslmode=require", "sslmode=prefer"] {
        let url = url.replace("sslmode=require", mode);
        let err = PostgresStore::open(&config(url, Some(other.clone()))).unwrap_err();
        let text = format!("{err} {err:?}");
        println!("{mode} with the wrong CA: {err}");
        assert!(
            text.contains("certificate did not verify against storage.tls_ca"),
            "{text}"
        );
        assert!(text.contains("UnknownIssuer"), "{text}");
        assert!(!text.contains("s3cret-pw"), "{text}");
    }

    // The right CA, but the certificate is not for the name asked for.
    let url = format!(
        "host=db.example.invalid hostaddr=127.0.0.1 port={} user=postgres password=s3cret-pw \
         dbname=postgres sslmode=require",
        server.port
    );
    let err = PostgresStore::open(&config(url, Some(ca))).unwrap_err();
    let text = format!("{err} {err:?}");
    println!("wrong host name: {err}");
    assert!(
        text.contains("did not verify") && text.contains("NotValidForName"),
        "{text}"
    );
    assert!(!text.contains("s3cret-pw"), "{text}");

    // No tls_ca: the system's roots do not know the test CA either.
    let err = PostgresStore::open(&config(server.url("sslmode=require"), None)).unwrap_err();
    println!("system roots: {err}");
    assert!(err.to_string().contains("did not verify"), "{err}");
    println!("test took {:?}", started.elapsed());
}

#[test]
fn sslmode_disable_still_works_against_the_shared_server() {
    let db = TestDb::new("tls_disable");
    let url = with_option(&db.url, "sslmode=disable");
    let store = PostgresStore::open(&config(url, None)).expect("opening without TLS");
    crate::storage::conformance::check(&store);
}

#[test]
fn sslmode_require_against_a_server_without_tls_fails() {
    // The shared server runs without ssl.
    let db = TestDb::new("tls_required");
    let url = with_option(&db.url, "sslmode=require");
    let err = PostgresStore::open(&config(url, None)).unwrap_err();
    println!("{err}");
    assert!(err.to_string().contains("does not support TLS"), "{err}");
}

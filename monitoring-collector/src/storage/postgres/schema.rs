//! The tables and indexes of the PostgreSQL store, created at start.
//!
//! - `logs`, `metrics`, `flows`: the events, each `PARTITION BY RANGE
//!   (received_ns)` with one partition per UTC day of receipt (see `partition`).
//!   Labels and fields are `jsonb`. Text that queries compare or sort is
//!   `COLLATE "C"`, so that results come in byte order, as from the sqlite store
//!   and Rust, whatever the database's locale.
//! - `batches`: one row per committed batch, the dedup record. Not partitioned: its
//!   primary key must be unique across every day (a batch resent after midnight is
//!   still a duplicate); retention deletes its old rows.
//! - `agents`, `metric_names`, `health`: the inventory, the catalogue and the row
//!   the health check writes.
//!
//! Creation runs under an advisory lock, so collectors starting together take turns
//! instead of failing on each other's `CREATE ... IF NOT EXISTS` (which is not safe
//! against a concurrent creator). Every statement is idempotent, so this doubles as
//! the upgrade path for additive changes.

use postgres::Client;

/// The advisory lock key that serialises schema and partition changes between
/// collectors sharing a database ("monitor" in ASCII).
pub(crate) const DDL_LOCK: i64 = 0x006d_6f6e_6974_6f72;

/// Tables and plain indexes.
const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS batches (
    agent_id     text COLLATE "C" NOT NULL,
    stream_id    bigint NOT NULL,
    sequence     bigint NOT NULL,
    received_ns  bigint NOT NULL,
    event_count  bigint NOT NULL,
    PRIMARY KEY (agent_id, stream_id, sequence)
);
CREATE INDEX IF NOT EXISTS batches_received ON batches (received_ns);

CREATE TABLE IF NOT EXISTS logs (
    id            bigint GENERATED ALWAYS AS IDENTITY,
    received_ns   bigint NOT NULL,
    timestamp_ns  bigint NOT NULL,
    agent_id      text COLLATE "C" NOT NULL,
    source        text COLLATE "C" NOT NULL,
    severity      smallint,
    message       text NOT NULL,
    labels        jsonb NOT NULL,
    fields        jsonb NOT NULL
) PARTITION BY RANGE (received_ns);
CREATE INDEX IF NOT EXISTS logs_time ON logs (timestamp_ns, id);
CREATE INDEX IF NOT EXISTS logs_agent_time ON logs (agent_id, timestamp_ns, id);
CREATE INDEX IF NOT EXISTS logs_source_time ON logs (source, timestamp_ns, id);
CREATE INDEX IF NOT EXISTS logs_severity_time ON logs (severity, timestamp_ns, id);

CREATE TABLE IF NOT EXISTS metrics (
    id            bigint GENERATED ALWAYS AS IDENTITY,
    received_ns   bigint NOT NULL,
    timestamp_ns  bigint NOT NULL,
    agent_id      text COLLATE "C" NOT NULL,
    source        text COLLATE "C" NOT NULL,
    name          text COLLATE "C" NOT NULL,
    labels        jsonb NOT NULL,
    kind          text COLLATE "C" NOT NULL,
    value         double precision,
    detail        jsonb
) PARTITION BY RANGE (received_ns);
CREATE INDEX IF NOT EXISTS metrics_name_time ON metrics (name, timestamp_ns);

CREATE TABLE IF NOT EXISTS flows (
    id            bigint GENERATED ALWAYS AS IDENTITY,
    received_ns   bigint NOT NULL,
    timestamp_ns  bigint NOT NULL,
    end_ns        bigint NOT NULL,
    agent_id      text COLLATE "C" NOT NULL,
    source        text COLLATE "C" NOT NULL,
    labels        jsonb NOT NULL,
    src_addr      text COLLATE "C" NOT NULL,
    dst_addr      text COLLATE "C" NOT NULL,
    src_port      integer NOT NULL,
    dst_port      integer NOT NULL,
    protocol      smallint NOT NULL,
    bytes_out     bigint NOT NULL,
    bytes_in      bigint NOT NULL,
    packets_out   bigint NOT NULL,
    packets_in    bigint NOT NULL,
    tcp_flags     smallint NOT NULL
) PARTITION BY RANGE (received_ns);
CREATE INDEX IF NOT EXISTS flows_time ON flows (timestamp_ns);

CREATE TABLE IF NOT EXISTS agents (
    id              text COLLATE "C" PRIMARY KEY,
    last_seen_ns    bigint NOT NULL,
    hostname        text,
    os              text,
    kernel_version  text,
    arch            text,
    info_ts         bigint,
    cpu_percent     double precision,
    cpu_ts          bigint,
    memory_percent  double precision,
    memory_ts       bigint
);

CREATE TABLE IF NOT EXISTS metric_names (
    name           text COLLATE "C" PRIMARY KEY,
    kind           text NOT NULL,
    first_seen_ns  bigint NOT NULL
);

CREATE TABLE IF NOT EXISTS health (
    id          integer PRIMARY KEY CHECK (id = 1),
    checked_ns  bigint NOT NULL
);
"#;

/// What the schema step found out about the server.
#[derive(Debug, Clone)]
pub(crate) struct Schema {
    /// The expression log searches match words against: the message lowercased
    /// under ICU's root collation when the server has ICU (so that letters and
    /// case beyond ASCII follow Unicode whatever the database's locale), else
    /// under the database's own.
    pub(crate) message_expr: &'static str,
    /// A trigram index over that expression exists.
    pub(crate) trigram_index: bool,
}

const ICU_EXPR: &str = r#"lower(message COLLATE "und-x-icu")"#;
const PLAIN_EXPR: &str = "lower(message)";

/// Creates what is missing, under the advisory lock; with `text_index` false, drops
/// the trigram index if an earlier start made it.
pub(crate) fn create(client: &mut Client, text_index: bool) -> Result<Schema, postgres::Error> {
    let mut tx = client.transaction()?;
    tx.query_one("SELECT pg_advisory_xact_lock($1)", &[&DDL_LOCK])?;
    tx.batch_execute(SCHEMA)?;
    let icu: bool = tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_collation WHERE collname = 'und-x-icu')",
            &[],
        )?
        .try_get(0)?;
    let message_expr = if icu { ICU_EXPR } else { PLAIN_EXPR };
    if !text_index {
        tx.batch_execute("DROP INDEX IF EXISTS logs_message_trgm")?;
        tx.commit()?;
        return Ok(Schema {
            message_expr,
            trigram_index: false,
        });
    }
    // pg_trgm is a trusted extension (a database owner may create it), but the
    // role may still lack the right, or the server the contrib package: then
    // searches work, only slower, on large tables.
    tx.batch_execute("SAVEPOINT trigram")?;
    let index = format!(
        "CREATE EXTENSION IF NOT EXISTS pg_trgm;
         CREATE INDEX IF NOT EXISTS logs_message_trgm ON logs USING gin ({message_expr} gin_trgm_ops);"
    );
    let trigram_index = match tx.batch_execute(&index) {
        Ok(()) => {
            tx.batch_execute("RELEASE SAVEPOINT trigram")?;
            true
        }
        Err(error) => {
            tx.batch_execute("ROLLBACK TO SAVEPOINT trigram")?;
            tracing::warn!(
                message = "Cannot create the pg_trgm extension or its index; log searches will scan instead.",
                error = %super::error::chain(&error),
            );
            false
        }
    };
    tx.commit()?;
    Ok(Schema {
        message_expr,
        trigram_index,
    })
}

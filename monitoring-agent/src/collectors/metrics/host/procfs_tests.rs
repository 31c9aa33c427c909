//! The `/proc` parsers on real samples of their files, and one live sample of this
//! machine with TCP connections and disk writes made by the test.

#![allow(clippy::unwrap_used)] // Tests may unwrap.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use monitoring_common::event::Labels;

use super::procfs::*;
use super::sample::HostSampler;
use super::sample::tests::gauges;

#[test]
fn diskstats_whole_disks_only() {
    let text = "   7       0 loop0 5 0 10 0 0 0 0 0 0 4 0 0 0 0 0 0 0\n\
                 252       0 vda 62081 25227 4466522 30432 361204 372245 19154552 626079 0 478164 680960 0 0 0 0 41271 24448\n\
                 252       1 vda1 61911 25227 4458650 30397 361204 372245 19154552 626079 0 478140 656477 0 0 0 0 0 0\n\
                 251       0 zram0 100 0 800 0 0 0 0 0 0 0 0\n\
                   8       0 sda 1 2 3\n";
    let disks = parse_diskstats(text, |name| {
        !name.ends_with(char::is_numeric) || name == "vda"
    });
    assert_eq!(disks.len(), 1, "{disks:?}");
    assert_eq!(
        disks["vda"],
        DiskTotals {
            reads: 62081,
            read_bytes: 4_466_522 * 512,
            writes: 361_204,
            written_bytes: 19_154_552 * 512,
            io_ms: 478_164,
        }
    );
}

#[test]
fn net_dev_errors_and_drops() {
    let text = "Inter-|   Receive                                                |  Transmit\n \
                face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    \
                lo: 2806968964  229442    0    0    0     0          0         0 2806968964  229442    0    0    0     0       0          0\n  \
                eth0: 100 10 3 4 0 0 0 0 200 20 5 6 0 0 0 0\n";
    let errors = parse_net_dev(text);
    assert_eq!(errors["lo"], NetErrors::default());
    assert_eq!(
        errors["eth0"],
        NetErrors {
            rx_errors: 3,
            rx_drops: 4,
            tx_errors: 5,
            tx_drops: 6
        }
    );
}

#[test]
fn tcp_states_file_nr_pressure_and_procs() {
    let tcp = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   \
               0: 00000000:07E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1649 1 0 100 0 0 10 0\n   \
               1: 0100007F:07E8 0100007F:A1B2 01 00000000:00000000 00:00000000 00000000     0        0 1650 1 0 100 0 0 10 0\n   \
               2: 0100007F:07E8 0100007F:A1B3 06 00000000:00000000 00:00000000 00000000     0        0 0 1 0 100 0 0 10 0\n";
    let mut counts = BTreeMap::new();
    count_tcp_states(tcp, &mut counts);
    count_tcp_states(tcp, &mut counts);
    assert_eq!(counts["listen"], 2);
    assert_eq!(counts["established"], 2);
    assert_eq!(counts["time_wait"], 2);
    assert_eq!(counts["close_wait"], 0);
    assert_eq!(counts.len(), 12);

    let snmp = "Ip: Forwarding DefaultTTL\nIp: 1 64\n\
                Tcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens PassiveOpens AttemptFails EstabResets CurrEstab InSegs\n\
                Tcp: 1 200 120000 -1 2297 1003 3 30 17 96531\n\
                Udp: InDatagrams NoPorts\nUdp: 5 6\n";
    assert_eq!(parse_snmp_curr_estab(snmp), Some(17));
    assert_eq!(parse_snmp_curr_estab("Tcp: CurrEstab\n"), None);
    let sockstat =
        "sockets: used 61\nTCP: inuse 11 orphan 0 tw 2 alloc 14 mem 0\nUDP: inuse 0 mem 0\n";
    assert_eq!(parse_sockstat_time_wait(sockstat), Some(2));
    assert_eq!(parse_sockstat_time_wait("TCP: inuse 1\n"), None);

    assert_eq!(parse_file_nr("844\t0\t2466193\n"), Some((844, 2_466_193)));
    assert_eq!(parse_file_nr("garbage"), None);

    let psi = parse_pressure(
        "some avg10=99.22 avg60=98.86 avg300=92.01 total=7066785470\n\
         full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
    );
    assert_eq!(psi.len(), 2);
    assert_eq!(psi[0].0, "some");
    assert_eq!(
        psi[0].1,
        Pressure {
            avg10: 99.22,
            avg60: 98.86,
            total_us: 7_066_785_470
        }
    );

    let stat = "cpu  1 2 3\nctxt 5\nprocs_running 9\nprocs_blocked 2\n";
    assert_eq!(parse_stat_procs(stat), (Some(9), Some(2)));
}

#[test]
fn a_live_sample_has_tcp_states_fds_disks_and_pressure() {
    let mut sampler = HostSampler::new(Labels::new(), 0, true).unwrap();
    let mut cheap = HostSampler::new(Labels::new(), 0, false).unwrap();
    // Connections the sample must see, and writes that reach a disk.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let _client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let _server = listener.accept().unwrap();
    // Under the crate, not /tmp: /tmp may be a tmpfs, which has no disk.
    let dir = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap();
    let mut file = std::fs::File::create(dir.path().join("x")).unwrap();
    file.write_all(&vec![7u8; 4 << 20]).unwrap();
    file.sync_all().unwrap();
    std::thread::sleep(Duration::from_millis(300));

    let g = gauges(&sampler.sample());
    let state = |s: &str| {
        g["host_tcp_connections"]
            .iter()
            .find(|(l, _)| l["state"] == s)
            .unwrap()
            .1
    };
    assert!(state("listen") >= 1.0);
    assert!(state("established") >= 2.0);
    // By default only the two states the kernel counts, without the full tables.
    let cheap = gauges(&cheap.sample());
    let states: Vec<(&str, f64)> = cheap["host_tcp_connections"]
        .iter()
        .map(|(l, v)| (l["state"].as_str(), *v))
        .collect();
    assert_eq!(states.len(), 2, "{states:?}");
    assert!(
        states[0].0 == "established" && states[0].1 >= 2.0,
        "{states:?}"
    );
    assert_eq!(states[1].0, "time_wait");
    assert!(g["host_file_descriptors_allocated"][0].1 >= 1.0);
    assert!(g["host_file_descriptors_max"][0].1 >= g["host_file_descriptors_allocated"][0].1);
    assert!(g.contains_key("host_network_receive_errors_total"));
    assert!(g.contains_key("host_processes_running"));
    assert!(g.contains_key("host_processes_blocked"));
    if std::path::Path::new("/proc/pressure/cpu").exists() {
        assert!(
            g["host_pressure_avg10_percent"]
                .iter()
                .any(|(l, _)| l["resource"] == "cpu" && l["kind"] == "some")
        );
        assert!(g.contains_key("host_pressure_stall_seconds_total"));
    }
    let written: f64 = g["host_disk_write_bytes_per_second"]
        .iter()
        .map(|(_, v)| v)
        .sum();
    assert!(
        written > 0.0,
        "4 MiB were fsynced: {:?}",
        g["host_disk_write_bytes_per_second"]
    );
    assert!(
        g["host_disk_io_utilization_percent"]
            .iter()
            .all(|(_, v)| (0.0..=100.0).contains(v))
    );
}

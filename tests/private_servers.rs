//! The private servers tests and `make chaos` restart: each starts, serves
//! its user, stops, and starts again on the same data.

mod common;

use common::private_mariadb::PrivateMariaDb;

#[test]
fn a_private_mariadb_serves_its_user_across_a_restart() {
    let mut db = PrivateMariaDb::start();
    db.admin_sql(
        "CREATE DATABASE chaos; CREATE TABLE chaos.t (id BIGINT); INSERT INTO chaos.t VALUES (1)",
    );
    db.stop();
    db.start_server();
    let out = std::process::Command::new("mariadb")
        .args([
            "--no-defaults",
            "-h",
            "127.0.0.1",
            "-P",
            &db.port.to_string(),
        ])
        .args([
            "-u",
            "tidemill",
            "-ptidemill",
            "-NBe",
            "SELECT count(*) FROM chaos.t",
        ])
        .output()
        .expect("mariadb client");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "1",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

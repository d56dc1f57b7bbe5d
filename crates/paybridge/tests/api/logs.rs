//! Logs written to a file (or a pipe) are plain text: ANSI colour only on a terminal.

use crate::common::{Backend, Server, TestDb};

#[tokio::test]
async fn logs_in_a_file_carry_no_colour_codes() {
    let db = TestDb::new(Backend::Sqlite).await.expect("sqlite");
    let s = Server::start(&db).await;
    // A few requests, so there are request lines as well as the start's.
    for path in ["/healthz", "/v1/apps", "/nope"] {
        let _ = s.http.get(s.url(path)).send().await.unwrap();
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let logs = s.logs();
    assert!(logs.contains("request"), "no request lines logged:\n{logs}");
    assert!(
        !logs.contains('\u{1b}'),
        "ANSI escape codes in a log file:\n{}",
        logs.escape_debug()
    );
}

//! The data-directory manager: discovery, creation, deletion.

use crate::{LogConfig, LogManager, TopicPartition};

use super::append;

#[test]
fn open_all_discovers_partitions_and_finishes_deletes() {
    let dir = tempfile::tempdir().unwrap();
    {
        let m = LogManager::open_all(dir.path(), 0, |_| LogConfig::default()).unwrap();
        let a = m.create("my-topic.v2", 0, LogConfig::default(), 0).unwrap();
        let b = m
            .create("my-topic.v2", 11, LogConfig::default(), 0)
            .unwrap();
        append(&a, 3, 1_000, 5);
        append(&b, 2, 1_000, 5);
        // create is idempotent.
        let again = m.create("my-topic.v2", 0, LogConfig::default(), 0).unwrap();
        assert!(std::sync::Arc::ptr_eq(&a, &again));
        assert!(m.create("../evil", 0, LogConfig::default(), 0).is_err());
        assert!(m.create("ok", -1, LogConfig::default(), 0).is_err());
        m.close_all().unwrap();
    }
    std::fs::create_dir(dir.path().join("controller")).unwrap();
    std::fs::write(dir.path().join("meta.properties"), "x").unwrap();
    std::fs::create_dir(dir.path().join("old-0.0123abcd-delete")).unwrap();
    let mut seen = Vec::new();
    let m = LogManager::open_all(dir.path(), 0, |tp| {
        seen.push(tp.clone());
        LogConfig::default()
    })
    .unwrap();
    seen.sort();
    assert_eq!(
        seen,
        vec![
            TopicPartition::new("my-topic.v2", 0),
            TopicPartition::new("my-topic.v2", 11)
        ]
    );
    assert_eq!(m.get("my-topic.v2", 0).unwrap().log_end_offset(), 3);
    assert_eq!(m.get("my-topic.v2", 11).unwrap().log_end_offset(), 2);
    assert!(m.get("my-topic.v2", 1).is_none());
    assert!(!dir.path().join("old-0.0123abcd-delete").exists());
    assert!(dir.path().join("controller").exists());
    assert_eq!(m.all().len(), 2);
}

#[test]
fn delete_removes_the_directory_and_closes_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let m = LogManager::open_all(dir.path(), 0, |_| LogConfig::default()).unwrap();
    let log = m.create("t", 0, LogConfig::default(), 0).unwrap();
    append(&log, 3, 1_000, 5);
    assert!(m.delete("t", 0).unwrap());
    assert!(!m.delete("t", 0).unwrap());
    assert!(m.get("t", 0).is_none());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing left behind"
    );
    // A holder of the old handle can still read what it had, but not write.
    assert!(!log
        .read(0, 1000, i64::MAX, true)
        .unwrap()
        .records
        .is_empty());
    let mut b = crate::testutil::batch(1, 1, 1);
    assert!(log.append_as_leader(&mut b, 0, 1).is_err());
    // A background flusher still holding it does no harm.
    log.flush().unwrap();
    log.write_checkpoints().unwrap();
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    // Re-creating starts from scratch.
    let fresh = m.create("t", 0, LogConfig::default(), 0).unwrap();
    assert_eq!(fresh.log_end_offset(), 0);
}

//! The artifact store's contract, run against every backend that can run
//! here: `memory://`, `file://`, and `s3://` on a real S3 server (s3s-fs)
//! started on 127.0.0.1 for the test.
#![allow(clippy::unwrap_used)] // a test that cannot proceed should panic right there

mod s3;

use std::path::Path;

use bytes::Bytes;
use kaon_artifacts::{ArtifactError, ArtifactKind, ArtifactStore, Digest, hash_path};

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// Bytes that are not all alike, so parts and digests differ.
fn content(len: usize, seed: u8) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9 ^ u32::from(seed);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

async fn contract(store: ArtifactStore, scratch: &Path) {
    // Bytes.
    let d = store.put_bytes(Bytes::from_static(b"hello")).await.unwrap();
    assert_eq!(d, Digest::of(b"hello"));
    assert!(store.contains(&d).await.unwrap());
    assert_eq!(&store.read_bytes(&d).await.unwrap()[..], b"hello");
    // Twice is a no-op with the same answer.
    assert_eq!(
        store.put_bytes(Bytes::from_static(b"hello")).await.unwrap(),
        d
    );

    // A small file and one spanning several multipart parts.
    for (name, len) in [("small.bin", 1000usize), ("large.bin", 21 << 20)] {
        let src = scratch.join(name);
        let bytes = content(len, len as u8);
        write(&src, &bytes);
        let s = store.put_file(&src).await.unwrap();
        assert_eq!(s.digest, Digest::of(&bytes), "{name}");
        assert_eq!(s.size, len as u64);
        assert_eq!(s.kind, ArtifactKind::File);
        let back = scratch.join("back").join(name);
        assert_eq!(store.get_file(&s.digest, &back).await.unwrap(), len as u64);
        assert_eq!(std::fs::read(&back).unwrap(), bytes, "{name} round trip");
        assert_eq!(store.verify(&s.digest).await.unwrap(), len as u64);
        let before = store.blobs().await.unwrap().len();
        assert_eq!(store.put_file(&src).await.unwrap(), s);
        assert_eq!(
            store.blobs().await.unwrap().len(),
            before,
            "{name}: second put adds nothing"
        );
    }

    // A folder: files by digest plus a manifest.
    let dir = scratch.join("out");
    write(&dir.join("part-0000.parquet"), b"zero");
    write(&dir.join("part-0001.parquet"), b"one");
    write(&dir.join("nested/_SUCCESS"), b"");
    write(&dir.join("same-as-zero"), b"zero");
    let s = store.put_dir(&dir).await.unwrap();
    assert_eq!(s.kind, ArtifactKind::Dir);
    assert_eq!(s.files, 4);
    assert_eq!(s.size, 11);
    let m = store.manifest(&s.digest).await.unwrap();
    let paths: Vec<&str> = m.entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "nested/_SUCCESS",
            "part-0000.parquet",
            "part-0001.parquet",
            "same-as-zero"
        ]
    );
    assert_eq!(m.entries[1].digest, m.entries[3].digest);
    assert_eq!(
        hash_path(&dir).await.unwrap(),
        Some((ArtifactKind::Dir, s.digest)),
        "hashing in place agrees with storing"
    );
    let back = scratch.join("back-dir");
    write(&back.join("stale"), b"old content is replaced");
    store.get_dir(&s.digest, &back).await.unwrap();
    assert_eq!(
        hash_path(&back).await.unwrap(),
        Some((ArtifactKind::Dir, s.digest))
    );
    assert!(!back.join("stale").exists());
    // Already there: nothing written.
    assert!(
        !store
            .materialize(ArtifactKind::Dir, &s.digest, &back)
            .await
            .unwrap()
    );
    std::fs::write(back.join("part-0001.parquet"), b"edited").unwrap();
    assert!(
        store
            .materialize(ArtifactKind::Dir, &s.digest, &back)
            .await
            .unwrap()
    );
    assert_eq!(
        std::fs::read(back.join("part-0001.parquet")).unwrap(),
        b"one"
    );

    // A digest nobody stored.
    let nobody = Digest::of(b"nobody stored this");
    assert!(!store.contains(&nobody).await.unwrap());
    match store.get_file(&nobody, &scratch.join("never")).await {
        Err(ArtifactError::Missing { digest, .. }) => assert_eq!(digest, nobody),
        other => panic!("expected Missing, got {other:?}"),
    }
    assert!(!scratch.join("never").exists());

    // Two writers of the same content at once: one blob, same digest.
    let big = content(17 << 20, 7);
    write(&scratch.join("a.bin"), &big);
    write(&scratch.join("b.bin"), &big);
    let before = store.blobs().await.unwrap().len();
    let (pa, pb) = (scratch.join("a.bin"), scratch.join("b.bin"));
    let (a, b) = tokio::join!(store.put_file(&pa), store.put_file(&pb));
    assert_eq!(a.unwrap().digest, b.unwrap().digest);
    assert_eq!(store.blobs().await.unwrap().len(), before + 1);

    // An upload cut off part-way leaves no blob: the source is a pipe that
    // delivers 20 MiB and then stalls, so the put is surely mid-stream
    // when its task is aborted.
    let fifo = scratch.join("stalled.fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let (close_tx, close_rx) = std::sync::mpsc::channel::<()>();
    let writer_path = fifo.clone();
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&writer_path)
            .unwrap();
        // The reader may be gone already when this runs out: ignore errors.
        let _ = f.write_all(&content(20 << 20, 11));
        let _ = close_rx.recv();
    });
    let before = store.blobs().await.unwrap();
    let s2 = store.clone();
    let task = tokio::spawn(async move { s2.put_file(&fifo).await });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!task.is_finished(), "the put should be waiting on the pipe");
    task.abort();
    let _ = task.await;
    close_tx.send(()).unwrap();
    writer.join().unwrap();
    assert_eq!(
        store.blobs().await.unwrap(),
        before,
        "a cut-off put must not leave a blob visible"
    );
    // Deleting and garbage.
    store.delete(&d).await.unwrap();
    assert!(!store.contains(&d).await.unwrap());
    store.delete(&d).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store() {
    let scratch = tempfile::tempdir().unwrap();
    contract(
        ArtifactStore::open("memory://", scratch.path()).unwrap(),
        scratch.path(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_store() {
    let scratch = tempfile::tempdir().unwrap();
    let store = ArtifactStore::open("store", scratch.path()).unwrap();
    assert!(store.url().starts_with("file:///"));
    contract(store.clone(), scratch.path()).await;

    // A blob whose bytes changed on disk is refused, by name.
    let src = scratch.path().join("victim.txt");
    write(&src, b"the real content");
    let s = store.put_file(&src).await.unwrap();
    let on_disk = scratch
        .path()
        .join("store")
        .join(store.blob_path(&s.digest));
    assert!(on_disk.is_file(), "{}", on_disk.display());
    // Blobs are hard links of read-only content; replace, do not write through.
    std::fs::remove_file(&on_disk).unwrap();
    std::fs::write(&on_disk, b"the fake content").unwrap();
    let dest = scratch.path().join("victim-back.txt");
    match store.get_file(&s.digest, &dest).await {
        Err(e @ ArtifactError::Corrupt { .. }) => {
            assert!(e.to_string().contains(&s.digest.to_string()), "{e}")
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert!(
        !dest.exists(),
        "a corrupt blob must not reach the destination"
    );
    assert!(matches!(
        store.verify(&s.digest).await,
        Err(ArtifactError::Corrupt { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_store() {
    let server = s3::S3Server::start("kaon-test");
    let scratch = tempfile::tempdir().unwrap();
    let store = server.store("artifacts/v1");
    contract(store.clone(), scratch.path()).await;
    // The blobs are real objects in the server's bucket folder.
    let d = Digest::of(&content(1000, 232));
    let on_server = server.root.join("kaon-test").join(store.blob_path(&d));
    assert!(on_server.is_file(), "{}", on_server.display());

    // References: files left where a job wrote them, checked for change.
    let table = server.root.join("kaon-test/tables/users");
    write(&table.join("part-0.parquet"), b"rows");
    write(&table.join("part-1.parquet"), b"more rows");
    let url = "s3://kaon-test/tables/users/";
    let r = kaon_artifacts::record_reference(url, scratch.path(), &server.options())
        .await
        .unwrap();
    assert_eq!(r.entries.len(), 2);
    assert_eq!(r.entries[0].path, "part-0.parquet");
    assert_eq!(r.entries[1].size, 9);
    assert!(
        kaon_artifacts::check_reference(&r, scratch.path(), &server.options())
            .await
            .unwrap()
            .is_empty()
    );
    write(&table.join("part-1.parquet"), b"different rows");
    write(&table.join("part-2.parquet"), b"new");
    let diffs = kaon_artifacts::check_reference(&r, scratch.path(), &server.options())
        .await
        .unwrap();
    assert_eq!(
        diffs,
        ["part-1.parquet: size 9 -> 14", "part-2.parquet: new file"]
    );
}

#[test]
fn bad_urls_say_what_is_wrong() {
    let base = Path::new("/tmp");
    let e = ArtifactStore::open("ftp://host/x", base)
        .unwrap_err()
        .to_string();
    assert!(e.contains("unknown scheme `ftp`"), "{e}");
    let e = ArtifactStore::open("hdfs://nn:8020/x", base)
        .unwrap_err()
        .to_string();
    assert!(e.contains("hdfs"), "{e}");
}

//! The artifact store's contract, run against every backend that can run
//! here: `memory://`, `file://`, and `s3://` on a real S3 server (s3s-fs)
//! started on 127.0.0.1 for the test.
#![allow(clippy::unwrap_used)] // a test that cannot proceed should panic right there

mod s3;

use std::path::Path;

use bytes::Bytes;
use kaon_artifacts::{ArtifactError, ArtifactKind, ArtifactStore, Digest, Existing, hash_path};

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

/// All of [`ArtifactStore::read_stream`], or its error.
async fn streamed(store: &ArtifactStore, d: &Digest) -> Result<Vec<u8>, (Vec<u8>, ArtifactError)> {
    use futures::StreamExt;
    let mut out = Vec::new();
    let mut s = store.read_stream(d).await.map_err(|e| (Vec::new(), e))?;
    while let Some(c) = s.next().await {
        match c {
            Ok(c) => out.extend_from_slice(&c),
            Err(e) => return Err((out, e)),
        }
    }
    Ok(out)
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
        // Streamed whole, checked; a range, not read whole.
        assert_eq!(streamed(&store, &s.digest).await.unwrap(), bytes, "{name}");
        let tail = store
            .read_range_unchecked(&s.digest, len as u64 - 10..len as u64 + 100)
            .await;
        assert_eq!(&tail.unwrap()[..], &bytes[len - 10..], "{name}");
        assert_eq!(
            &store.read_range_unchecked(&s.digest, 3..7).await.unwrap()[..],
            &bytes[3..7]
        );
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
    write(&back.join("mine"), b"a file kaon did not write");
    // Restoring into a folder merges: the artifact's files appear, the
    // user's file stays.
    assert_eq!(
        store
            .materialize(ArtifactKind::Dir, &s.digest, &back, Existing::Refuse)
            .await
            .unwrap(),
        4
    );
    assert_eq!(
        std::fs::read(back.join("mine")).unwrap(),
        b"a file kaon did not write"
    );
    std::fs::remove_file(back.join("mine")).unwrap();
    assert_eq!(
        hash_path(&back).await.unwrap(),
        Some((ArtifactKind::Dir, s.digest))
    );
    // Already there: nothing written.
    assert_eq!(
        store
            .materialize(ArtifactKind::Dir, &s.digest, &back, Existing::Refuse)
            .await
            .unwrap(),
        0
    );
    // A file that differs is refused, naming it, and nothing is written...
    std::fs::write(back.join("part-0001.parquet"), b"edited").unwrap();
    std::fs::remove_file(back.join("nested/_SUCCESS")).unwrap();
    match store
        .materialize(ArtifactKind::Dir, &s.digest, &back, Existing::Refuse)
        .await
    {
        Err(e @ ArtifactError::Conflicts { .. }) => {
            assert!(e.to_string().contains("part-0001.parquet"), "{e}")
        }
        other => panic!("expected Conflicts, got {other:?}"),
    }
    assert_eq!(
        std::fs::read(back.join("part-0001.parquet")).unwrap(),
        b"edited"
    );
    assert!(!back.join("nested/_SUCCESS").exists());
    // ...unless replacing was asked for.
    assert_eq!(
        store
            .materialize(ArtifactKind::Dir, &s.digest, &back, Existing::Replace)
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        std::fs::read(back.join("part-0001.parquet")).unwrap(),
        b"one"
    );
    // Never through a link, never over a folder or a file in the way.
    let outside = scratch.join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let linked = scratch.join("linked-dir");
    write(&linked.join("part-0000.parquet"), b"zero");
    std::os::unix::fs::symlink(&outside, linked.join("nested")).unwrap();
    assert!(matches!(
        store
            .materialize(ArtifactKind::Dir, &s.digest, &linked, Existing::Replace)
            .await,
        Err(ArtifactError::LinkInTheWay { .. })
    ));
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
    let a_file = scratch.join("a-file");
    write(&a_file, b"precious");
    assert!(matches!(
        store
            .materialize(ArtifactKind::Dir, &s.digest, &a_file, Existing::Replace)
            .await,
        Err(ArtifactError::InTheWay { .. })
    ));
    assert!(matches!(
        store
            .materialize(
                ArtifactKind::File,
                &Digest::of(b"hello"),
                &back,
                Existing::Replace
            )
            .await,
        Err(ArtifactError::InTheWay { .. })
    ));
    assert_eq!(std::fs::read(&a_file).unwrap(), b"precious");
    assert!(back.join("part-0000.parquet").is_file());

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
    // Streamed, it ends with the error, never with all the bad bytes.
    match streamed(&store, &s.digest).await {
        Err((got, ArtifactError::Corrupt { .. })) => assert!(got.len() < 16, "{got:?}"),
        other => panic!("expected Corrupt, got {other:?}"),
    }
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
    assert_eq!(store.check_all().await.unwrap().len(), 1);
    // Storing the real content again repairs the blob in place.
    assert_eq!(store.put_file(&src).await.unwrap(), s);
    assert_eq!(store.verify(&s.digest).await.unwrap(), 16);
    assert!(store.check_all().await.unwrap().is_empty());
    // So does a put of bytes held in memory; a quarantined blob is gone
    // from `blobs/` but kept aside.
    let small = store.put_bytes(Bytes::from_static(b"small")).await.unwrap();
    let small_disk = scratch.path().join("store").join(store.blob_path(&small));
    std::fs::remove_file(&small_disk).unwrap();
    std::fs::write(&small_disk, b"smalL").unwrap();
    assert_eq!(
        store.put_bytes(Bytes::from_static(b"small")).await.unwrap(),
        small
    );
    assert_eq!(&store.read_bytes(&small).await.unwrap()[..], b"small");
    std::fs::write(&small_disk, b"smalL").unwrap();
    let kept = store.quarantine(&small).await.unwrap();
    assert!(!store.contains(&small).await.unwrap());
    assert!(scratch.path().join("store").join(kept).is_file());
}

#[tokio::test]
async fn outputs_never_follow_links_out_of_their_folder() {
    let scratch = tempfile::tempdir().unwrap();
    let store = ArtifactStore::open("memory://", scratch.path()).unwrap();
    let secret = scratch.path().join("secret");
    write(&secret.join("key"), b"not for the artifact store");
    let out = scratch.path().join("out");
    write(&out.join("model.bin"), b"weights");
    // A link to a file or folder inside the output is followed.
    std::os::unix::fs::symlink("model.bin", out.join("latest.bin")).unwrap();
    std::fs::create_dir_all(out.join("sub")).unwrap();
    std::os::unix::fs::symlink("../model.bin", out.join("sub/up.bin")).unwrap();
    let s = store.put_path(&out).await.unwrap();
    assert_eq!(s.files, 3);
    // A link out of it is an error naming the link, for a file...
    std::os::unix::fs::symlink(secret.join("key"), out.join("key")).unwrap();
    match store.put_path(&out).await {
        Err(e @ ArtifactError::LinkOutside { .. }) => {
            assert!(e.to_string().contains("out/key"), "{e}")
        }
        other => panic!("expected LinkOutside, got {other:?}"),
    }
    assert!(
        hash_path(&out).await.is_err(),
        "hashing follows the same rule"
    );
    std::fs::remove_file(out.join("key")).unwrap();
    // ...for a folder, and for a loop back to a folder it is in.
    std::os::unix::fs::symlink(&secret, out.join("etc")).unwrap();
    assert!(matches!(
        store.put_path(&out).await,
        Err(ArtifactError::LinkOutside { .. })
    ));
    std::fs::remove_file(out.join("etc")).unwrap();
    std::os::unix::fs::symlink("..", out.join("sub/loop")).unwrap();
    assert!(matches!(
        store.put_path(&out).await,
        Err(ArtifactError::LinkLoop { .. })
    ));
    std::fs::remove_file(out.join("sub/loop")).unwrap();
    // Two folders that link to each other: a loop too, not an endless walk.
    std::fs::create_dir_all(out.join("a")).unwrap();
    std::fs::create_dir_all(out.join("b")).unwrap();
    std::os::unix::fs::symlink("../b", out.join("a/x")).unwrap();
    std::os::unix::fs::symlink("../a", out.join("b/x")).unwrap();
    assert!(matches!(
        store.put_path(&out).await,
        Err(ArtifactError::LinkLoop { .. })
    ));
    assert!(matches!(
        kaon_artifacts::hash_code(&out).await,
        Err(ArtifactError::LinkLoop { .. })
    ));
    std::fs::remove_file(out.join("b/x")).unwrap();
    // A folder the store is told to skip (kaon's data directory) and the
    // temporary files of a cut-off restore are never part of an output.
    write(&out.join(".kaon/kaon.db"), b"the database");
    write(&out.join(".model.bin.kaon-1-2-3"), b"half a file");
    let skipping = store.clone().skipping(&out.join(".kaon"));
    let s = skipping.put_path(&out).await.unwrap();
    let m = skipping.manifest(&s.digest).await.unwrap();
    let names: Vec<&str> = m.entries.iter().map(|e| e.path.as_str()).collect();
    assert!(!names.iter().any(|n| n.contains(".kaon")), "{names:?}");
    // The output itself: `inside` resolves links before comparing.
    std::os::unix::fs::symlink(secret.join("key"), scratch.path().join("work-link")).unwrap();
    assert!(kaon_artifacts::inside(&out.join("model.bin"), scratch.path()).is_ok());
    assert!(matches!(
        kaon_artifacts::inside(&scratch.path().join("work-link"), &out),
        Err(ArtifactError::LinkOutside { .. })
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

#[test]
fn kinds_and_digests_parse_or_say_why_not() {
    for kind in [
        ArtifactKind::File,
        ArtifactKind::Dir,
        ArtifactKind::Reference,
    ] {
        assert_eq!(kind.as_str().parse::<ArtifactKind>().unwrap(), kind);
    }
    match "folder".parse::<ArtifactKind>() {
        Err(e @ ArtifactError::UnknownKind { .. }) => {
            assert_eq!(e.to_string(), "unknown artifact kind `folder`");
        }
        other => panic!("expected UnknownKind, got {other:?}"),
    }
    assert!(matches!(
        "blake3:12".parse::<Digest>(),
        Err(ArtifactError::BadDigest { ref text }) if text == "blake3:12"
    ));
}

//! The S3 store against a real S3-compatible server (SeaweedFS started by
//! scripts/services.sh; its endpoint comes from LECTERN_TEST_S3_ENDPOINT).

use std::io;

use bytes::Bytes;
use futures::StreamExt;
use lectern_seams::storage::s3::S3Store;
use lectern_seams::storage::{
    ByteRange, ByteStream, ObjectStore, SharedStore, StorageError, Tier, open_storage, read_to_vec,
};

/// The URL of a new place on the test server, with `extra` parameters.
fn url(extra: &str) -> Option<String> {
    let Ok(endpoint) = std::env::var("LECTERN_TEST_S3_ENDPOINT") else {
        if std::env::var("LECTERN_REQUIRE_SERVICES").is_ok() {
            panic!("LECTERN_TEST_S3_ENDPOINT is not set: start scripts/services.sh");
        }
        eprintln!("skipped: no S3 server (scripts/services.sh start)");
        return None;
    };
    // One bucket for every test run, a prefix per test: buckets are costly in SeaweedFS.
    let prefix = format!("t{}", lectern_seams::new_id().replace('-', ""));
    Some(format!(
        "s3://lectern-rust-tests?endpoint={endpoint}&region=us-east-1&path_style=true&prefix={prefix}{extra}"
    ))
}

async fn store() -> Option<SharedStore> {
    Some(open_storage(&url("")?).await.unwrap())
}

fn pieces(data: &[u8], piece: usize) -> ByteStream {
    let chunks: Vec<io::Result<Bytes>> = data
        .chunks(piece)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    futures::stream::iter(chunks).boxed()
}

async fn read_all(store: &SharedStore, key: &str, range: Option<ByteRange>) -> Vec<u8> {
    let Some(range) = range else {
        return read_to_vec(store.as_ref(), key).await.unwrap();
    };
    let mut read = store.read(key, Some(range)).await.unwrap();
    let mut out = Vec::new();
    while let Some(c) = read.body.next().await {
        out.extend_from_slice(&c.unwrap());
    }
    out
}

#[tokio::test]
async fn resumable_object_spans_parts_survives_interruptions_and_rolls_back() {
    let Some(store) = store().await else { return };
    let data: Vec<u8> = (0..21 * 1024 * 1024 + 12345u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let key = "uploads/abc";
    // 3 MiB: only a tail, no part yet.
    let a = 3 * 1024 * 1024;
    assert_eq!(
        store
            .append(key, 0, pieces(&data[..a], 65536))
            .await
            .unwrap()
            .new_len,
        a as u64
    );
    // An append cut short keeps what arrived (a part and a tail here)...
    let mut broken: Vec<io::Result<Bytes>> = data[a..a + 9 * 1024 * 1024]
        .chunks(1 << 20)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    broken.push(Err(io::Error::other("client went away")));
    let out = store
        .append(key, a as u64, futures::stream::iter(broken).boxed())
        .await
        .unwrap();
    assert_eq!(out.new_len, (a + 9 * 1024 * 1024) as u64);
    assert!(out.interrupted.is_some());
    // ...and can be taken back, as ingest does for a checksummed chunk.
    store.truncate(key, a as u64).await.unwrap();
    // 10 MiB more crosses a part boundary; then it is taken back (a checksum failure).
    let b = a + 10 * 1024 * 1024;
    assert_eq!(
        store
            .append(key, a as u64, pieces(&data[a..b], 1 << 20))
            .await
            .unwrap()
            .new_len,
        b as u64
    );
    store.truncate(key, a as u64).await.unwrap();
    assert!(matches!(
        store
            .append(key, b as u64, pieces(&data[b..], 1 << 20))
            .await,
        Err(StorageError::OffsetMismatch { .. })
    ));
    // Resume from the committed offset into the same multipart upload, to the end.
    assert_eq!(
        store
            .append(key, a as u64, pieces(&data[a..b], 1 << 20))
            .await
            .unwrap()
            .new_len,
        b as u64
    );
    assert_eq!(
        store
            .append(key, b as u64, pieces(&data[b..], 777_777))
            .await
            .unwrap()
            .new_len,
        data.len() as u64
    );
    store.finish_append(key).await.unwrap();
    store.finish_append(key).await.unwrap();
    assert_eq!(store.head(key).await.unwrap().size, data.len() as u64);
    assert!(
        read_all(&store, key, None).await == data,
        "stored object differs"
    );
    let r = ByteRange {
        start: 8 * 1024 * 1024 - 5,
        end: 8 * 1024 * 1024 + 5,
    };
    assert_eq!(
        read_all(&store, key, Some(r)).await,
        &data[r.start as usize..=r.end as usize]
    );
    let local = tempfile::NamedTempFile::new().unwrap();
    store.download_to(key, local.path()).await.unwrap();
    assert!(std::fs::read(local.path()).unwrap() == data);
}

#[tokio::test]
async fn small_uploads_objects_and_prefix_deletion() {
    let Some(store) = store().await else { return };
    store
        .append("uploads/small", 0, pieces(b"hello world", 4))
        .await
        .unwrap();
    store.finish_append("uploads/small").await.unwrap();
    assert_eq!(
        read_all(&store, "uploads/small", None).await,
        b"hello world"
    );
    store
        .put_bytes("assets/x/master.m3u8", Bytes::from_static(b"#EXTM3U\n"))
        .await
        .unwrap();
    store
        .put_bytes("assets/x/v1/seg_00000.ts", Bytes::from_static(b"G"))
        .await
        .unwrap();
    store
        .put_bytes("assets/xy/keep", Bytes::from_static(b"k"))
        .await
        .unwrap();
    store.delete_prefix("assets/x").await.unwrap();
    assert!(matches!(
        store.head("assets/x/master.m3u8").await,
        Err(StorageError::NotFound(_))
    ));
    assert_eq!(store.head("assets/xy/keep").await.unwrap().size, 1);
    assert!(matches!(
        store.read("assets/nothing", None).await,
        Err(StorageError::NotFound(_))
    ));
    store
        .append(
            "uploads/gone",
            0,
            pieces(&vec![1u8; 9 * 1024 * 1024], 1 << 20),
        )
        .await
        .unwrap();
    store.delete("uploads/gone").await.unwrap();
    assert_eq!(
        store
            .append("uploads/gone", 0, pieces(b"again", 5))
            .await
            .unwrap()
            .new_len,
        5
    );
    store.check().await.unwrap();
}

/// Originals move to the cold bucket and back, server-side; objects larger than the
/// single-copy limit go in parts (here 5 MiB parts, S3's smallest).
#[tokio::test]
async fn objects_move_to_the_cold_bucket_and_back() {
    let Some(url) = url("&cold_bucket=lectern-rust-tests-cold") else {
        return;
    };
    let store = S3Store::open(&url)
        .await
        .unwrap()
        .with_copy_parts(6 << 20, 5 << 20);
    let big: Vec<u8> = (0..13 * 1024 * 1024 + 777u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 11) as u8)
        .collect();
    store
        .put_bytes("uploads/big", Bytes::from(big.clone()))
        .await
        .unwrap();
    store
        .put_bytes("uploads/small", Bytes::from_static(b"small original"))
        .await
        .unwrap();
    for key in ["uploads/big", "uploads/small"] {
        store.move_to(key, Tier::Cold).await.unwrap();
        assert!(matches!(
            store.head(key).await,
            Err(StorageError::NotFound(_))
        ));
        // A move asked again (one cut short by a crash) finds it done.
        store.move_to(key, Tier::Cold).await.unwrap();
    }
    let cold_url = url
        .replace("s3://lectern-rust-tests?", "s3://lectern-rust-tests-cold?")
        .replace("&cold_bucket=lectern-rust-tests-cold", "");
    let cold = open_storage(&cold_url).await.unwrap();
    assert_eq!(
        cold.head("uploads/big").await.unwrap().size,
        big.len() as u64
    );
    store.move_to("uploads/big", Tier::Hot).await.unwrap();
    let store: SharedStore = std::sync::Arc::new(store);
    assert!(read_all(&store, "uploads/big", None).await == big);
    assert!(matches!(
        cold.head("uploads/big").await,
        Err(StorageError::NotFound(_))
    ));
    // Deleting removes the cold copy too.
    store.delete("uploads/small").await.unwrap();
    assert!(matches!(
        cold.head("uploads/small").await,
        Err(StorageError::NotFound(_))
    ));
    assert!(matches!(
        store.move_to("uploads/none", Tier::Cold).await,
        Err(StorageError::NotFound(_))
    ));
}

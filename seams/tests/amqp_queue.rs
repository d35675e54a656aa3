//! The RabbitMQ queue against a real broker (started by scripts/services.sh; its URL
//! comes from LECTERN_TEST_QUEUE_URL). Each test uses its own name prefix.

use std::time::Duration;

use lectern_seams::queue::{SharedQueue, Topic, open_queue};

async fn queue(prefix: &str) -> Option<(SharedQueue, String)> {
    let Ok(url) = std::env::var("LECTERN_TEST_QUEUE_URL") else {
        if std::env::var("LECTERN_REQUIRE_SERVICES").is_ok() {
            panic!("LECTERN_TEST_QUEUE_URL is not set: start scripts/services.sh");
        }
        eprintln!("skipped: no RabbitMQ (scripts/services.sh start)");
        return None;
    };
    let prefix = format!("{prefix}{}", &lectern_seams::new_id()[..8]);
    let full = format!("{url}?prefix={prefix}");
    Some((open_queue(&full).await.unwrap(), full))
}

async fn next(q: &SharedQueue, topic: Topic) -> lectern_seams::queue::Delivery {
    let mut c = q.consumer(topic).await.unwrap();
    tokio::time::timeout(Duration::from_secs(20), c.next())
        .await
        .expect("a message in time")
        .unwrap()
}

#[tokio::test]
async fn publish_consume_ack_and_depth() {
    let Some((q, _)) = queue("t-basic-").await else {
        return;
    };
    q.publish(Topic::Jobs, b"one".to_vec()).await.unwrap();
    q.publish(Topic::Events, b"ev".to_vec()).await.unwrap();
    let mut c = q.consumer(Topic::Jobs).await.unwrap();
    let d = c.next().await.unwrap();
    assert_eq!((d.payload.as_slice(), d.attempt), (&b"one"[..], 1));
    d.ack().await.unwrap();
    assert_eq!(next(&q, Topic::Events).await.payload, b"ev");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(q.depth(Topic::Jobs).await.unwrap(), 0);
}

#[tokio::test]
async fn retries_come_back_after_their_delay_with_the_attempt_counted() {
    let Some((q, _)) = queue("t-retry-").await else {
        return;
    };
    q.publish(Topic::Jobs, b"job".to_vec()).await.unwrap();
    let mut c = q.consumer(Topic::Jobs).await.unwrap();
    let started = std::time::Instant::now();
    c.next()
        .await
        .unwrap()
        .retry_after(Duration::from_millis(1500))
        .await
        .unwrap();
    let again = tokio::time::timeout(Duration::from_secs(20), c.next())
        .await
        .unwrap()
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(1400),
        "{:?}",
        started.elapsed()
    );
    assert_eq!((again.payload.as_slice(), again.attempt), (&b"job"[..], 2));
    again.dead_letter("always fails").await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(q.depth(Topic::Jobs).await.unwrap(), 0);
    assert_eq!(q.dead_letters(Topic::Jobs).await.unwrap(), 1);
    assert_eq!(q.dead_letters(Topic::AudioJobs).await.unwrap(), 0);
    // RabbitMQ tells counts over AMQP, not the age of the oldest message.
    assert_eq!(q.oldest_waiting(Topic::Jobs).await.unwrap(), None);
    // Both deliveries carried when they became ready, so their wait was measured.
    let waits = lectern_seams::metrics::metrics()
        .queue_wait
        .with_label_values(&[Topic::Jobs.name()])
        .get_sample_count();
    assert!(waits >= 2, "{waits}");
}

#[tokio::test]
async fn a_message_held_by_a_dead_consumer_is_redelivered_as_a_new_attempt() {
    let Some((q, url)) = queue("t-crash-").await else {
        return;
    };
    q.publish(Topic::Jobs, b"job".to_vec()).await.unwrap();
    {
        // Another process takes the job and dies with it (its connection closes).
        let holder = open_queue(&url).await.unwrap();
        let d = next(&holder, Topic::Jobs).await;
        assert_eq!(d.attempt, 1);
        std::mem::forget(d);
        drop(holder);
    }
    let again = next(&q, Topic::Jobs).await;
    assert_eq!(again.payload, b"job");
    assert_eq!(again.attempt, 2);
    again.ack().await.unwrap();
}

#[tokio::test]
async fn audio_jobs_have_a_lane_of_their_own_with_its_own_retries() {
    let Some((q, _)) = queue("t-audio-").await else {
        return;
    };
    q.publish(Topic::AudioJobs, b"audio".to_vec())
        .await
        .unwrap();
    q.publish(Topic::Jobs, b"video".to_vec()).await.unwrap();
    // Each lane holds one message in hand, whatever the other holds.
    let mut video_lane = q.consumer(Topic::Jobs).await.unwrap();
    let video = tokio::time::timeout(Duration::from_secs(20), video_lane.next())
        .await
        .unwrap()
        .unwrap();
    let mut audio_lane = q.consumer(Topic::AudioJobs).await.unwrap();
    let audio = tokio::time::timeout(Duration::from_secs(20), audio_lane.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (video.payload.as_slice(), audio.payload.as_slice()),
        (&b"video"[..], &b"audio"[..])
    );
    // A retried audio job comes back to the audio lane, not the video one.
    audio.retry_after(Duration::from_millis(500)).await.unwrap();
    let again = tokio::time::timeout(Duration::from_secs(20), audio_lane.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (again.payload.as_slice(), again.attempt),
        (&b"audio"[..], 2)
    );
    again.ack().await.unwrap();
    video.ack().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        (
            q.depth(Topic::Jobs).await.unwrap(),
            q.depth(Topic::AudioJobs).await.unwrap()
        ),
        (0, 0)
    );
}

#[tokio::test]
async fn consumers_are_counted_across_connections_and_leave_when_dropped() {
    let Some((q, url)) = queue("t-consumers-").await else {
        return;
    };
    assert_eq!(q.consumers(Topic::Jobs).await.unwrap(), 0);
    // Two other processes, each with its own connection.
    let (a, b) = (
        open_queue(&url).await.unwrap(),
        open_queue(&url).await.unwrap(),
    );
    let first = a.consumer(Topic::Jobs).await.unwrap();
    let second = b.consumer(Topic::Jobs).await.unwrap();
    let _audio = b.consumer(Topic::AudioJobs).await.unwrap();
    assert_eq!(q.consumers(Topic::Jobs).await.unwrap(), 2);
    assert_eq!(q.consumers(Topic::AudioJobs).await.unwrap(), 1);
    let settled = |want: u64| {
        let q = q.clone();
        async move {
            for _ in 0..50 {
                if q.consumers(Topic::Jobs).await.unwrap() == want {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            false
        }
    };
    drop(first);
    assert!(settled(1).await, "a dropped consumer still counts");
    drop(second);
    drop(b);
    assert!(
        settled(0).await,
        "a closed connection's consumer still counts"
    );
}

//! Lectures encoded in parts (chunks of video rungs, one audio part, one stills part),
//! as ingest scheduled them: recording each stored part once, however often its event
//! is delivered; the playlists stitched from what is stored (growing EVENT playlists
//! while parts are missing); and the lecture's way from processing to playable to ready.

use lectern_packager::{
    LecturePlaylists, MASTER_PLAYLIST, MEDIA_PLAYLIST, RenditionPieces, SegmentFacts,
};
use lectern_seams::db::Db;
use lectern_seams::ids::{AssetId, LectureId};
use lectern_seams::lecture::{self, LectureStatus};
use lectern_seams::messages::{PartReport, Rung, SourceFacts};
use lectern_seams::storage::SharedStore;

use crate::error::CatalogError;

/// Where a chunked lecture stands after a part was recorded.
#[derive(Debug, Clone, PartialEq)]
pub enum Advance {
    /// Nothing a viewer would notice changed (or the part was a stale or repeated one).
    Nothing,
    /// More parts are stored; `percent` of them.
    Progress { percent: u8 },
    /// The lecture just became playable.
    Playable,
    /// Every part is stored and the VOD playlists are written.
    Ready { duration_secs: f64 },
    /// The stored parts do not join up (a bug upstream, not a passing fault): the
    /// lecture failed with this reason rather than retrying forever.
    Failed { reason: String },
}

/// Records a stored part (or, for a partial report, what is stored of it so far) and
/// moves the lecture on. Idempotent: a part recorded twice, or one of an asset the
/// lecture no longer uses, changes nothing. A partial report never replaces a final
/// one nor a partial one that lists as many segments, however late it arrives.
pub async fn record(
    db: &Db,
    store: &SharedStore,
    lecture_id: &LectureId,
    asset_id: &AssetId,
    report: &PartReport,
) -> Result<Advance, CatalogError> {
    let updated = lectern_seams::parts::record_report(db, asset_id, report).await?;
    let current: Option<(String,)> =
        sqlx::query_as("SELECT status FROM lectures WHERE id = $1 AND asset_id = $2")
            .bind(lecture_id)
            .bind(asset_id)
            .fetch_optional(db)
            .await?;
    let Some(status) = current.and_then(|(s,)| LectureStatus::parse(&s)) else {
        return Ok(Advance::Nothing);
    };
    // A repeated event still finishes the work a crash may have cut short.
    if !updated && status == LectureStatus::Ready {
        return Ok(Advance::Nothing);
    }
    let Some(state) = load(db, asset_id).await? else {
        return Ok(Advance::Nothing);
    };
    let playlists = match state.playlists() {
        Ok(p) => p,
        Err(e) => return fail(db, lecture_id, asset_id, &e.to_string()).await,
    };
    if state.complete() {
        let Some(playlists) = playlists else {
            return fail(
                db,
                lecture_id,
                asset_id,
                "every part is stored but nothing plays",
            )
            .await;
        };
        // Media playlists first, the master last: a player never finds a master whose
        // playlists are missing.
        for (folder, text) in &playlists.media {
            store
                .put_bytes(
                    &format!("assets/{asset_id}/{folder}/{MEDIA_PLAYLIST}"),
                    text.clone().into_bytes().into(),
                )
                .await?;
        }
        store
            .put_bytes(
                &format!("assets/{asset_id}/{MASTER_PLAYLIST}"),
                playlists.master.clone().into_bytes().into(),
            )
            .await?;
        let duration_secs = state.duration_secs();
        let changed = lecture::mark_ready(db, lecture_id, asset_id, duration_secs).await?;
        return Ok(if changed {
            Advance::Ready { duration_secs }
        } else {
            Advance::Nothing
        });
    }
    let percent = state.percent();
    if status == LectureStatus::Processing
        && playlists.is_some()
        && lecture::mark_playable(
            db,
            lecture_id,
            asset_id,
            percent,
            state.source.duration_secs,
        )
        .await?
    {
        return Ok(Advance::Playable);
    }
    let changed = lecture::record_progress(db, lecture_id, asset_id, percent).await?;
    Ok(if changed {
        Advance::Progress { percent }
    } else {
        Advance::Nothing
    })
}

async fn fail(
    db: &Db,
    lecture_id: &LectureId,
    asset_id: &AssetId,
    why: &str,
) -> Result<Advance, CatalogError> {
    tracing::error!(
        lecture = %lecture_id,
        asset = %asset_id,
        why,
        "a lecture's parts do not join up"
    );
    let reason = format!("Transcoding failed: the lecture's parts do not join up ({why}).");
    mark_failed(db, lecture_id, asset_id, &reason, None).await?;
    Ok(Advance::Failed { reason })
}

/// Fails a lecture still encoding this asset (`lecture::mark_failed`).
pub async fn mark_failed(
    db: &Db,
    lecture_id: &LectureId,
    asset_id: &AssetId,
    reason: &str,
    diagnostics: Option<&str>,
) -> Result<bool, CatalogError> {
    Ok(lecture::mark_failed(db, lecture_id, asset_id, reason, diagnostics).await?)
}

/// The playlists of a chunked asset that is still in parts, or None when the asset is
/// not chunked or cannot play yet. (Once complete, its playlists are in storage.)
pub async fn live_playlists(
    db: &Db,
    asset_id: &AssetId,
) -> Result<Option<LecturePlaylists>, CatalogError> {
    match load(db, asset_id).await? {
        Some(state) => state.playlists(),
        None => Ok(None),
    }
}

/// What the database holds about a chunked asset.
struct PartsState {
    source: SourceFacts,
    ladder: Vec<Rung>,
    /// Every report, partial ones included.
    reports: Vec<PartReport>,
    /// How many parts the asset has, stored or not.
    total: usize,
    /// How many parts are stored whole (their reports are final).
    stored: usize,
}

async fn load(db: &Db, asset_id: &AssetId) -> Result<Option<PartsState>, CatalogError> {
    let rows: Vec<(Option<String>, i64)> =
        sqlx::query_as("SELECT report, partial FROM asset_parts WHERE asset_id = $1")
            .bind(asset_id)
            .fetch_all(db)
            .await?;
    if rows.is_empty() {
        return Ok(None);
    }
    let asset: Option<(String, String)> =
        sqlx::query_as("SELECT probe, ladder FROM assets WHERE id = $1")
            .bind(asset_id)
            .fetch_optional(db)
            .await?;
    let Some((probe, ladder)) = asset else {
        return Ok(None);
    };
    let bad = |e: serde_json::Error| CatalogError::Internal(format!("asset {asset_id}: {e}"));
    let mut reports = Vec::new();
    let mut stored = 0;
    for (report, partial) in &rows {
        if let Some(r) = report {
            reports.push(serde_json::from_str::<PartReport>(r).map_err(bad)?);
            stored += usize::from(*partial == 0);
        }
    }
    Ok(Some(PartsState {
        source: serde_json::from_str(&probe).map_err(bad)?,
        ladder: serde_json::from_str(&ladder).map_err(bad)?,
        total: rows.len(),
        stored,
        reports,
    }))
}

impl PartsState {
    fn complete(&self) -> bool {
        self.stored == self.total
    }

    fn percent(&self) -> u8 {
        // 100 is for ready, when the VOD playlists are written.
        ((self.stored * 100 / self.total.max(1)) as u8).min(99)
    }

    /// Every rendition the lecture will have, with what is stored of it.
    fn pieces(&self) -> Vec<RenditionPieces> {
        let mut renditions: Vec<RenditionPieces> = self
            .ladder
            .iter()
            .map(|r| RenditionPieces {
                name: r.name.clone(),
                codec: None,
                video: Some((r.width, r.height)),
                pieces: Vec::new(),
                growing: false,
            })
            .collect();
        if self.source.has_audio {
            renditions.push(RenditionPieces {
                name: "audio".into(),
                codec: None,
                video: None,
                pieces: Vec::new(),
                growing: false,
            });
        }
        for report in &self.reports {
            for stored in &report.renditions {
                if let Some(r) = renditions.iter_mut().find(|r| r.name == stored.name) {
                    r.codec.get_or_insert_with(|| stored.codec.clone());
                    r.growing |= report.partial;
                    r.pieces.push(
                        stored
                            .segments
                            .iter()
                            .map(|s| SegmentFacts {
                                index: s.index,
                                duration: s.duration,
                                bytes: s.bytes,
                            })
                            .collect(),
                    );
                }
            }
        }
        renditions
    }

    fn playlists(&self) -> Result<Option<LecturePlaylists>, CatalogError> {
        lectern_packager::lecture_playlists(&self.pieces(), self.source.fps(), self.complete())
            .map_err(|e| CatalogError::Internal(format!("stitching playlists: {e}")))
    }

    /// The play time of the lowest rung, as stored.
    fn duration_secs(&self) -> f64 {
        let lowest = self
            .ladder
            .last()
            .map(|r| r.name.as_str())
            .unwrap_or("audio");
        self.reports
            .iter()
            .flat_map(|r| r.renditions.iter())
            .filter(|r| r.name == lowest)
            .flat_map(|r| r.segments.iter())
            .map(|s| s.duration)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lecture_id() -> LectureId {
        LectureId::parse("11111111-1111-4111-8111-111111111111").unwrap()
    }

    fn asset() -> AssetId {
        AssetId::parse("aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa").unwrap()
    }
    use lectern_seams::messages::{StoredRendition, StoredSegment};

    fn rendition(name: &str, segments: std::ops::Range<u64>, duration: f64) -> StoredRendition {
        StoredRendition {
            name: name.into(),
            codec: if name == "audio" {
                lectern_packager::AAC_LC.into()
            } else {
                "avc1.64001e".into()
            },
            rung: None,
            segments: segments
                .map(|index| StoredSegment {
                    index,
                    duration,
                    bytes: 1000,
                })
                .collect(),
        }
    }

    fn report(key: &str, r: StoredRendition, partial: bool) -> PartReport {
        PartReport {
            key: key.into(),
            renditions: vec![r],
            has_poster: false,
            has_storyboard: false,
            partial,
        }
    }

    /// A lecture processing a 30 s asset split into one video part and its audio.
    async fn lecture(dir: &std::path::Path) -> (Db, SharedStore) {
        let db =
            lectern_seams::db::connect(&format!("sqlite://{}", dir.join("db.sqlite").display()))
                .await
                .unwrap();
        let store = lectern_seams::storage::open_storage(&format!(
            "file://{}",
            dir.join("store").display()
        ))
        .await
        .unwrap();
        let source = SourceFacts {
            duration_secs: 30.0,
            has_video: true,
            has_audio: true,
            width: 426,
            height: 240,
            fps_num: 25,
            fps_den: 1,
            audio_channels: 2,
            container: "video/quicktime".into(),
            video_codec: None,
            audio_codec: None,
        };
        let ladder = vec![Rung {
            name: "v240".into(),
            width: 426,
            height: 240,
            video_kbps: 400,
            crf: None,
        }];
        for sql in [
            "INSERT INTO users (id, email, name, password_hash, role, created_at) VALUES ('u', 'u@x', 'U', 'x', 'owner', 0)",
            "INSERT INTO courses (id, owner_id, title, created_at, updated_at) VALUES ('c', 'u', 'C', 0, 0)",
            "INSERT INTO lectures (id, course_id, title, position, status, asset_id, created_at, updated_at)
             VALUES ('11111111-1111-4111-8111-111111111111', 'c', 'L', 0, 'processing', 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 0, 0)",
            "INSERT INTO asset_parts (asset_id, part_key, position, report) VALUES ('aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 'video', 0, NULL), ('aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 'audio', 1, NULL)",
        ] {
            sqlx::query(sql).execute(&db).await.unwrap();
        }
        sqlx::query("INSERT INTO assets (id, lecture_id, upload_id, source_key, probe, ladder, created_at) VALUES ('aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', '11111111-1111-4111-8111-111111111111', 'up', 'src', $1, $2, 0)")
            .bind(serde_json::to_string(&source).unwrap())
            .bind(serde_json::to_string(&ladder).unwrap())
            .execute(&db)
            .await
            .unwrap();
        (db, store)
    }

    async fn playing(db: &Db, rendition: &str) -> usize {
        let p = live_playlists(db, &asset())
            .await
            .unwrap()
            .expect("playable");
        p.file(&format!("{rendition}/{MEDIA_PLAYLIST}"))
            .unwrap()
            .lines()
            .filter(|l| l.ends_with(".ts"))
            .count()
    }

    #[tokio::test]
    async fn partial_audio_reports_grow_the_lecture_and_never_undo_a_final_one() {
        let dir = tempfile::tempdir().unwrap();
        let (db, store) = lecture(dir.path()).await;
        let video = report("video", rendition("v240", 0..5, 6.0), false);
        assert_eq!(
            record(&db, &store, &lecture_id(), &asset(), &video)
                .await
                .unwrap(),
            Advance::Progress { percent: 50 }
        );
        // Two audio segments so far: the lecture plays them, and two of video.
        let two = report("audio", rendition("audio", 0..2, 6.016), true);
        assert_eq!(
            record(&db, &store, &lecture_id(), &asset(), &two)
                .await
                .unwrap(),
            Advance::Playable
        );
        assert_eq!(
            (playing(&db, "v240").await, playing(&db, "audio").await),
            (2, 2)
        );
        // An older, shorter report arriving late changes nothing.
        let one = report("audio", rendition("audio", 0..1, 6.016), true);
        assert_eq!(
            record(&db, &store, &lecture_id(), &asset(), &one)
                .await
                .unwrap(),
            Advance::Nothing
        );
        assert_eq!(playing(&db, "v240").await, 2);
        let four = report("audio", rendition("audio", 0..4, 6.016), true);
        record(&db, &store, &lecture_id(), &asset(), &four)
            .await
            .unwrap();
        assert_eq!(
            (playing(&db, "v240").await, playing(&db, "audio").await),
            (4, 4)
        );
        // Still partial: the lecture is not ready.
        let status: (String,) = sqlx::query_as(
            "SELECT status FROM lectures WHERE id = '11111111-1111-4111-8111-111111111111'",
        )
        .fetch_one(&db)
        .await
        .unwrap();
        assert_eq!(status.0, "playable");

        let whole = report("audio", rendition("audio", 0..5, 6.016), false);
        assert_eq!(
            record(&db, &store, &lecture_id(), &asset(), &whole)
                .await
                .unwrap(),
            Advance::Ready {
                duration_secs: 30.0
            }
        );
        // A partial report delivered after the final one is ignored.
        assert_eq!(
            record(&db, &store, &lecture_id(), &asset(), &four)
                .await
                .unwrap(),
            Advance::Nothing
        );
        let (stored,): (String,) =
            sqlx::query_as("SELECT report FROM asset_parts WHERE part_key = 'audio'")
                .fetch_one(&db)
                .await
                .unwrap();
        assert_eq!(serde_json::from_str::<PartReport>(&stored).unwrap(), whole);
        let vod = lectern_seams::storage::read_to_vec(
            store.as_ref(),
            &format!("assets/{}/audio/index.m3u8", asset()),
        )
        .await
        .unwrap();
        assert!(String::from_utf8(vod).unwrap().contains("#EXT-X-ENDLIST"));
    }
}

//! What owners read: per lecture and per course, computed from the sessions kept and
//! the daily counts rolled up from older ones.

use std::collections::{BTreeMap, HashSet};

use lectern_seams::db::Db;
use lectern_seams::ids::{CourseId, LectureId, UserId};
use lectern_web::auth::AuthUser;
use serde::Serialize;

use super::{BUCKETS, Browser};
use crate::courses::{editable_course, visible_lecture};
use crate::error::CatalogError;

/// A view counts as complete when it covered this many hundredths of the lecture.
const COMPLETE_BUCKETS: u32 = 90;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DayCount {
    /// `YYYY-MM-DD` (UTC).
    pub day: String,
    pub views: i64,
    pub viewers: i64,
    pub watch_secs: f64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct BrowserQoe {
    pub browser: String,
    pub views: i64,
    pub errors: i64,
}

/// Quality of experience over the views kept.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Qoe {
    /// Time from asking to play to the first frame.
    pub startup_p50_ms: Option<i64>,
    pub startup_p95_ms: Option<i64>,
    /// Stalled time over stalled plus watched time.
    pub rebuffer_ratio: f64,
    pub rebuffers_per_view: f64,
    pub errors_by_browser: Vec<BrowserQoe>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Totals {
    pub views: i64,
    /// Distinct viewers among the views kept (the retention period).
    pub unique_viewers: i64,
    pub watch_secs: f64,
    /// Share of views that watched at least 90 % of the lecture.
    pub completion_rate: f64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LectureReport {
    pub lecture_id: LectureId,
    pub title: String,
    pub duration_secs: Option<f64>,
    #[serde(flatten)]
    pub totals: Totals,
    /// Share of views still watching at each hundredth of the lecture (100 values).
    pub retention: Vec<f64>,
    pub per_day: Vec<DayCount>,
    pub qoe: Qoe,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LectureLine {
    pub lecture_id: LectureId,
    pub title: String,
    #[serde(flatten)]
    pub totals: Totals,
    pub startup_p50_ms: Option<i64>,
    pub rebuffer_ratio: f64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CourseReport {
    pub course_id: CourseId,
    #[serde(flatten)]
    pub totals: Totals,
    pub per_day: Vec<DayCount>,
    pub qoe: Qoe,
    pub lectures: Vec<LectureLine>,
}

type SessionRow = (
    UserId,
    i64,
    Option<i64>,
    i64,
    i64,
    i64,
    i64,
    String,
    i64,
    i64,
);

/// The sessions kept of one lecture (or all of a course's).
async fn sessions(db: &Db, column: &str, id: &str) -> Result<Vec<SessionRow>, CatalogError> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT user_id, day, startup_ms, watched_ms, rebuffer_count, rebuffer_ms, errors, browser, cover_lo, cover_hi
         FROM view_sessions WHERE {column} = $1"
    )))
    .bind(id)
    .fetch_all(db)
    .await?)
}

async fn rolled_up(
    db: &Db,
    column: &str,
    id: &str,
) -> Result<Vec<(i64, i64, i64, i64)>, CatalogError> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT day, views, viewers, watched_ms FROM view_daily WHERE {column} = $1"
    )))
    .bind(id)
    .fetch_all(db)
    .await?)
}

fn covered(lo: i64, hi: i64) -> u32 {
    (lo & ((1 << 50) - 1)).count_ones() + (hi & ((1 << 50) - 1)).count_ones()
}

fn percentile(sorted: &[i64], p: f64) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

fn date(day: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(day * 86_400)
        .map(|t| t.date().to_string())
        .unwrap_or_else(|_| day.to_string())
}

/// Totals, per day and QoE of some sessions and rolled-up days.
struct Summary {
    totals: Totals,
    per_day: Vec<DayCount>,
    qoe: Qoe,
    retention: Vec<f64>,
}

fn summarize(rows: &[SessionRow], days: &[(i64, i64, i64, i64)]) -> Summary {
    let views = rows.len() as i64;
    let viewers: HashSet<&UserId> = rows.iter().map(|r| &r.0).collect();
    let mut per_day: BTreeMap<i64, (i64, HashSet<&UserId>, i64, i64)> = BTreeMap::new();
    let (mut watched, mut stalled, mut stalls, mut complete) = (0i64, 0i64, 0i64, 0i64);
    let mut startups = Vec::new();
    let mut browsers: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    let mut retention = vec![0i64; BUCKETS as usize];
    for (user, day, startup, w, count, ms, errors, browser, lo, hi) in rows {
        let d = per_day.entry(*day).or_default();
        d.0 += 1;
        d.1.insert(user);
        d.2 += w;
        watched += w;
        stalled += ms;
        stalls += count;
        startups.extend(*startup);
        let b = browsers.entry(browser.clone()).or_default();
        b.0 += 1;
        b.1 += errors;
        if covered(*lo, *hi) >= COMPLETE_BUCKETS {
            complete += 1;
        }
        for (i, r) in retention.iter_mut().enumerate() {
            let bit = if i < 50 {
                (lo >> i) & 1
            } else {
                (hi >> (i - 50)) & 1
            };
            *r += bit;
        }
    }
    let (mut old_views, mut old_watched) = (0, 0);
    for (day, v, viewers, w) in days {
        let d = per_day.entry(*day).or_default();
        d.0 += v;
        d.2 += w;
        d.3 += viewers;
        old_views += v;
        old_watched += w;
    }
    startups.sort_unstable();
    let share = |n: i64, of: i64| if of > 0 { n as f64 / of as f64 } else { 0.0 };
    Summary {
        totals: Totals {
            views: views + old_views,
            unique_viewers: viewers.len() as i64,
            watch_secs: (watched + old_watched) as f64 / 1000.0,
            completion_rate: share(complete, views),
        },
        per_day: per_day
            .into_iter()
            .map(|(day, (v, users, w, old_viewers))| DayCount {
                day: date(day),
                views: v,
                viewers: users.len() as i64 + old_viewers,
                watch_secs: w as f64 / 1000.0,
            })
            .collect(),
        qoe: Qoe {
            startup_p50_ms: percentile(&startups, 0.5),
            startup_p95_ms: percentile(&startups, 0.95),
            rebuffer_ratio: share(stalled, stalled + watched),
            rebuffers_per_view: share(stalls, views),
            errors_by_browser: Browser::ALL
                .iter()
                .filter_map(|b| browsers.get(b.as_str()).map(|e| (b.as_str(), e)))
                .map(|(b, (v, e))| BrowserQoe {
                    browser: b.to_string(),
                    views: *v,
                    errors: *e,
                })
                .collect(),
        },
        retention: retention.into_iter().map(|n| share(n, views)).collect(),
    }
}

/// One lecture's analytics, for its course's owner.
pub async fn lecture_report(
    db: &Db,
    user: &AuthUser,
    id: &LectureId,
) -> Result<LectureReport, CatalogError> {
    let (lecture, course) = visible_lecture(db, user, id).await?;
    editable_course(db, user, &course.id).await?;
    let rows = sessions(db, "lecture_id", id.as_str()).await?;
    let days = rolled_up(db, "lecture_id", id.as_str()).await?;
    let s = summarize(&rows, &days);
    Ok(LectureReport {
        lecture_id: lecture.id,
        title: lecture.title,
        duration_secs: lecture.duration_secs,
        totals: s.totals,
        retention: s.retention,
        per_day: s.per_day,
        qoe: s.qoe,
    })
}

/// A course's analytics, with a line per lecture, for its owner.
pub async fn course_report(
    db: &Db,
    user: &AuthUser,
    id: &CourseId,
) -> Result<CourseReport, CatalogError> {
    editable_course(db, user, id).await?;
    let rows = sessions(db, "course_id", id.as_str()).await?;
    let days = rolled_up(db, "course_id", id.as_str()).await?;
    let whole = summarize(&rows, &days);
    let mut lectures = Vec::new();
    for lecture in crate::courses::lectures_of(db, id).await? {
        let rows = sessions(db, "lecture_id", lecture.id.as_str()).await?;
        let days = rolled_up(db, "lecture_id", lecture.id.as_str()).await?;
        let s = summarize(&rows, &days);
        lectures.push(LectureLine {
            lecture_id: lecture.id,
            title: lecture.title,
            totals: s.totals,
            startup_p50_ms: s.qoe.startup_p50_ms,
            rebuffer_ratio: s.qoe.rebuffer_ratio,
        });
    }
    Ok(CourseReport {
        course_id: id.clone(),
        totals: whole.totals,
        per_day: whole.per_day,
        qoe: whole.qoe,
        lectures,
    })
}

/// The course report's lines as CSV (RFC 4180), one per lecture.
pub fn course_csv(report: &CourseReport) -> String {
    let field = |text: &str| {
        // A cell starting with = + - @ would run as a formula in a spreadsheet.
        let text = if text.starts_with(['=', '+', '-', '@']) {
            format!("'{text}")
        } else {
            text.to_string()
        };
        format!("\"{}\"", text.replace('"', "\"\""))
    };
    let mut out = String::from(
        "lecture_id,title,views,unique_viewers,watch_secs,completion_rate,startup_p50_ms,rebuffer_ratio\r\n",
    );
    for l in &report.lectures {
        out.push_str(&format!(
            "{},{},{},{},{:.1},{:.4},{},{:.4}\r\n",
            l.lecture_id,
            field(&l.title),
            l.totals.views,
            l.totals.unique_viewers,
            l.totals.watch_secs,
            l.totals.completion_rate,
            l.startup_p50_ms.map(|v| v.to_string()).unwrap_or_default(),
            l.rebuffer_ratio,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(user: &UserId, startup: i64, watched: i64, lo: i64, hi: i64) -> SessionRow {
        (
            user.clone(),
            20_000,
            Some(startup),
            watched,
            1,
            500,
            0,
            "chrome".into(),
            lo,
            hi,
        )
    }

    #[test]
    fn retention_completion_and_percentiles() {
        let (a, b) = (UserId::new(), UserId::new());
        let all = (1i64 << 50) - 1;
        let rows = vec![
            row(&a, 100, 60_000, all, all),
            row(&a, 300, 30_000, all, 0),
            row(&b, 200, 6_000, 0b1111111111, 0),
        ];
        let s = summarize(&rows, &[(19_999, 4, 2, 10_000)]);
        assert_eq!(s.totals.views, 7);
        assert_eq!(s.totals.unique_viewers, 2);
        assert!((s.totals.completion_rate - 1.0 / 3.0).abs() < 1e-9);
        assert_eq!(s.totals.watch_secs, 106.0);
        assert_eq!(s.retention[0], 1.0);
        assert!((s.retention[20] - 2.0 / 3.0).abs() < 1e-9);
        assert!((s.retention[99] - 1.0 / 3.0).abs() < 1e-9);
        assert_eq!(s.qoe.startup_p50_ms, Some(200));
        assert_eq!(s.qoe.startup_p95_ms, Some(300));
        assert_eq!(s.per_day.len(), 2);
        assert_eq!(s.per_day[1].day, "2024-10-04");
        assert_eq!((s.per_day[1].views, s.per_day[1].viewers), (3, 2));
    }

    #[test]
    fn csv_cells_are_quoted_and_never_formulas() {
        let line = |title: &str| LectureLine {
            lecture_id: LectureId::new(),
            title: title.into(),
            totals: Totals {
                views: 1,
                unique_viewers: 1,
                watch_secs: 1.0,
                completion_rate: 0.5,
            },
            startup_p50_ms: None,
            rebuffer_ratio: 0.0,
        };
        let report = CourseReport {
            course_id: CourseId::new(),
            totals: line("x").totals,
            per_day: vec![],
            qoe: summarize(&[], &[]).qoe,
            lectures: vec![line("Week \"1\", intro"), line("=HYPERLINK(\"x\")")],
        };
        let csv = course_csv(&report);
        assert!(csv.contains(",\"Week \"\"1\"\", intro\","));
        assert!(csv.contains(",\"'=HYPERLINK(\"\"x\"\")\","));
    }
}

//! Search across what a viewer may see: course titles and descriptions, lecture
//! titles, what is said in lectures (their captions, cue by cue) and what their
//! slides show. A hit in a
//! lecture's words carries the time it is said, so it opens the player there. Ranked
//! together: PostgreSQL full-text search ranks every kind (titles weigh more); SQLite
//! lists title hits first, then spoken ones by FTS5's bm25.

use lectern_seams::db::{Backend, Db};
use lectern_seams::ids::{CourseId, LectureId};
use lectern_web::auth::AuthUser;
use serde::{Deserialize, Serialize};

use crate::courses::{Page, course_matches, like_pattern, prefix_tsquery, search_words};
use crate::error::CatalogError;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchQuery {
    /// Words to find (each a prefix: `nyq` finds "Nyquist"); none finds nothing.
    pub q: Option<String>,
    /// Only this course's lectures and words.
    pub course: Option<String>,
    /// 1-based; clamped to 1..=1000.
    pub page: Option<i64>,
    /// Clamped to 1..=50; default 20.
    pub per_page: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HitKind {
    /// The course's title, category or description.
    Course,
    /// A lecture's title.
    Lecture,
    /// Words said in a lecture (a caption).
    Transcript,
    /// Words shown in a lecture (read from a slide or screen).
    Screen,
}

impl HitKind {
    fn parse(text: &str) -> Option<Self> {
        [
            HitKind::Course,
            HitKind::Lecture,
            HitKind::Transcript,
            HitKind::Screen,
        ]
        .into_iter()
        .find(|k| k.as_str() == text)
    }

    fn as_str(self) -> &'static str {
        match self {
            HitKind::Course => "course",
            HitKind::Lecture => "lecture",
            HitKind::Transcript => "transcript",
            HitKind::Screen => "screen",
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Hit {
    pub kind: HitKind,
    pub course_id: CourseId,
    pub course_title: String,
    pub lecture_id: Option<LectureId>,
    pub lecture_title: Option<String>,
    /// Where the words are said or shown, s from the lecture's start (transcript and
    /// screen hits).
    pub start_secs: Option<f64>,
    /// What matched: the course's description, the lecture's title, the caption, the
    /// slide's words.
    pub text: String,
}

#[derive(sqlx::FromRow)]
struct HitRow {
    kind: String,
    course_id: CourseId,
    course_title: String,
    lecture_id: Option<LectureId>,
    lecture_title: Option<String>,
    start_ms: Option<i64>,
    text: String,
}

impl HitRow {
    fn hit(self) -> Result<Hit, CatalogError> {
        Ok(Hit {
            kind: HitKind::parse(&self.kind)
                .ok_or_else(|| CatalogError::Internal(format!("a hit of kind {:?}", self.kind)))?,
            course_id: self.course_id,
            course_title: self.course_title,
            lecture_id: self.lecture_id,
            lecture_title: self.lecture_title,
            start_secs: self.start_ms.map(|ms| ms as f64 / 1000.0),
            text: self.text,
        })
    }
}

/// Hits for `query` among the courses `user` may see (published, or their own).
pub async fn search(
    db: &Db,
    user: &AuthUser,
    query: SearchQuery,
) -> Result<Page<Hit>, CatalogError> {
    let per_page = query.per_page.unwrap_or(20).clamp(1, 50);
    let page = query.page.unwrap_or(1).clamp(1, 1000);
    let q: String = query.q.unwrap_or_default().chars().take(200).collect();
    let empty = Page {
        items: Vec::new(),
        page,
        per_page,
        total: 0,
    };
    let words = search_words(&q);
    if words.is_empty() {
        return Ok(empty);
    }
    let course = match query.course.as_deref().filter(|c| !c.is_empty()) {
        Some(c) => Some(CourseId::parse(c).ok_or(CatalogError::NotFound("course"))?),
        None => None,
    };
    let mut args = vec![user.id.to_string()];
    let mut visible = "(c.published = 1 OR c.owner_id = $1)".to_string();
    if let Some(course) = course {
        args.push(course.to_string());
        visible.push_str(&format!(" AND c.id = ${}", args.len()));
    }
    let hits = match lectern_seams::db::backend(db) {
        Backend::Postgres => postgres_hits(&mut args, &q, &visible),
        Backend::Sqlite => sqlite_hits(&mut args, &words, &visible),
    };
    let count = format!("SELECT COUNT(*) FROM ({hits}) hits");
    let mut counted = sqlx::query_as::<_, (i64,)>(sqlx::AssertSqlSafe(count));
    for a in &args {
        counted = counted.bind(a.clone());
    }
    let (total,) = counted.fetch_one(db).await?;
    let (limit, offset) = (args.len() + 1, args.len() + 2);
    let list = format!(
        "SELECT kind, course_id, course_title, lecture_id, lecture_title, start_ms, text FROM ({hits}) hits
         ORDER BY rank DESC, course_title, lecture_title, start_ms LIMIT ${limit} OFFSET ${offset}"
    );
    let mut listed = sqlx::query_as::<_, HitRow>(sqlx::AssertSqlSafe(list));
    for a in &args {
        listed = listed.bind(a.clone());
    }
    let rows = listed
        .bind(per_page)
        .bind((page - 1) * per_page)
        .fetch_all(db)
        .await?;
    Ok(Page {
        items: rows
            .into_iter()
            .map(HitRow::hit)
            .collect::<Result<_, _>>()?,
        total,
        ..empty
    })
}

/// Every kind ranked by `ts_rank`; a course's words weigh 4, a lecture title's 2.
fn postgres_hits(args: &mut Vec<String>, q: &str, visible: &str) -> String {
    args.push(prefix_tsquery(q));
    let n = args.len();
    format!(
        "SELECT 'course' AS kind, c.id AS course_id, c.title AS course_title, NULL::text AS lecture_id,
                NULL::text AS lecture_title, NULL::bigint AS start_ms, c.description AS text,
                (4 * ts_rank(c.search, to_tsquery('simple', ${n})))::float8 AS rank
           FROM courses c WHERE c.search @@ to_tsquery('simple', ${n}) AND {visible}
         UNION ALL
         SELECT 'lecture', c.id, c.title, l.id, l.title, NULL::bigint, l.title,
                (2 * ts_rank(to_tsvector('simple', l.title), to_tsquery('simple', ${n})))::float8
           FROM lectures l JOIN courses c ON c.id = l.course_id
          WHERE to_tsvector('simple', l.title) @@ to_tsquery('simple', ${n}) AND {visible}
         UNION ALL
         SELECT 'transcript', c.id, c.title, l.id, l.title, t.start_ms, t.text,
                ts_rank(t.search, to_tsquery('simple', ${n}))::float8
           FROM transcript_cues t JOIN lectures l ON l.id = t.lecture_id JOIN courses c ON c.id = l.course_id
          WHERE t.search @@ to_tsquery('simple', ${n}) AND {visible}
         UNION ALL
         SELECT 'screen', c.id, c.title, l.id, l.title, s.start_ms, s.text,
                ts_rank(s.search, to_tsquery('simple', ${n}))::float8
           FROM lecture_slides s JOIN lectures l ON l.id = s.lecture_id JOIN courses c ON c.id = l.course_id
          WHERE s.search @@ to_tsquery('simple', ${n}) AND {visible}"
    )
}

/// Titles (every word found) first, then spoken words by bm25.
fn sqlite_hits(args: &mut Vec<String>, words: &[String], visible: &str) -> String {
    let mut course_words = Vec::new();
    let mut lecture_words = Vec::new();
    for word in words {
        args.push(like_pattern(word));
        let n = args.len();
        course_words.push(course_matches(&format!("${n}")));
        lecture_words.push(format!("l.title LIKE ${n} ESCAPE '\\'"));
    }
    // FTS5: each word a quoted prefix; the words hold only letters and digits.
    let fts: Vec<String> = words.iter().map(|w| format!("\"{w}\"*")).collect();
    args.push(fts.join(" AND "));
    let n = args.len();
    format!(
        "SELECT 'course' AS kind, c.id AS course_id, c.title AS course_title, NULL AS lecture_id,
                NULL AS lecture_title, NULL AS start_ms, c.description AS text, 2000.0 AS rank
           FROM courses c WHERE {} AND {visible}
         UNION ALL
         SELECT 'lecture', c.id, c.title, l.id, l.title, NULL, l.title, 1000.0
           FROM lectures l JOIN courses c ON c.id = l.course_id WHERE {} AND {visible}
         UNION ALL
         SELECT 'transcript', c.id, c.title, l.id, l.title, t.start_ms, t.text, -bm25(transcript_fts)
           FROM transcript_fts JOIN transcript_cues t ON t.id = transcript_fts.rowid
           JOIN lectures l ON l.id = t.lecture_id JOIN courses c ON c.id = l.course_id
          WHERE transcript_fts MATCH ${n} AND {visible}
         UNION ALL
         SELECT 'screen', c.id, c.title, l.id, l.title, s.start_ms, s.text, -bm25(slide_fts)
           FROM slide_fts JOIN lecture_slides s ON s.id = slide_fts.rowid
           JOIN lectures l ON l.id = s.lecture_id JOIN courses c ON c.id = l.course_id
          WHERE slide_fts MATCH ${n} AND {visible}",
        course_words.join(" AND "),
        lecture_words.join(" AND ")
    )
}

//! Courses, lectures and enrollment: who may see, edit and play what.

use lectern_seams::db::{Backend, Db};
use lectern_seams::ids::{AssetId, CourseId, LectureId, UserId};
use lectern_seams::language::CourseLanguage;
use lectern_seams::lecture::LectureStatus;
use lectern_seams::now_unix;
use lectern_seams::originals::OriginalTier;
use lectern_web::auth::{AuthUser, Role};
use serde::{Deserialize, Serialize};

use crate::error::CatalogError;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Course {
    pub id: CourseId,
    pub owner_id: UserId,
    pub title: String,
    pub description: String,
    pub category: String,
    pub price_cents: i64,
    pub published: bool,
    /// The language it is taught in: slides are read in it.
    pub language: CourseLanguage,
    pub lecture_count: i64,
    /// A poster for the course card: the first ready video lecture's.
    pub poster_url: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(sqlx::FromRow)]
struct CourseRow {
    id: CourseId,
    owner_id: UserId,
    title: String,
    description: String,
    category: String,
    price_cents: i64,
    published: i64,
    language: String,
    created_at: i64,
    updated_at: i64,
    lecture_count: i64,
    poster_lecture_id: Option<LectureId>,
}

const COURSE_COLUMNS: &str = "c.id, c.owner_id, c.title, c.description, c.category, c.price_cents, c.published, c.language, c.created_at, c.updated_at,
    (SELECT COUNT(*) FROM lectures l WHERE l.course_id = c.id) AS lecture_count,
    (SELECT l.id FROM lectures l WHERE l.course_id = c.id AND l.ready_asset_id IS NOT NULL AND l.media_kind = 'video'
        AND l.status <> 'playable' ORDER BY l.position, l.created_at LIMIT 1) AS poster_lecture_id";

impl Course {
    fn from_row(r: CourseRow) -> Self {
        Course {
            id: r.id,
            owner_id: r.owner_id,
            title: r.title,
            description: r.description,
            category: r.category,
            price_cents: r.price_cents,
            published: r.published != 0,
            language: CourseLanguage::parse(&r.language).unwrap_or(CourseLanguage::ENGLISH),
            created_at: r.created_at,
            updated_at: r.updated_at,
            lecture_count: r.lecture_count,
            poster_url: r
                .poster_lecture_id
                .map(|lecture| format!("/media/posters/{lecture}.jpg")),
        }
    }

    pub fn editable_by(&self, user: &AuthUser) -> bool {
        user.role == Role::Admin || self.owner_id == user.id
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Lecture {
    pub id: LectureId,
    pub course_id: CourseId,
    pub title: String,
    pub position: i64,
    pub status: LectureStatus,
    pub progress_percent: i64,
    pub failure_reason: Option<String>,
    pub duration_secs: Option<f64>,
    /// video | audio, once a file was accepted
    pub media_kind: Option<String>,
    pub playable: bool,
    /// The asset students play; internal, `playable` tells clients whether there is one.
    #[serde(skip)]
    pub ready_asset_id: Option<AssetId>,
    /// Where the file the lecture was made from is kept; absent before one is accepted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub original_tier: Option<OriginalTier>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(sqlx::FromRow)]
struct LectureRow {
    id: LectureId,
    course_id: CourseId,
    title: String,
    position: i64,
    status: String,
    progress_percent: i64,
    failure_reason: Option<String>,
    duration_secs: Option<f64>,
    media_kind: Option<String>,
    ready_asset_id: Option<AssetId>,
    created_at: i64,
    updated_at: i64,
    original_tier: Option<String>,
}

const LECTURE_COLUMNS: &str = "id, course_id, title, position, status, progress_percent, failure_reason, duration_secs, media_kind, ready_asset_id, created_at, updated_at,
    (SELECT u.tier FROM assets a JOIN uploads u ON u.id = a.upload_id WHERE a.id = lectures.asset_id) AS original_tier";

impl Lecture {
    fn from_row(r: LectureRow) -> Result<Self, CatalogError> {
        let status = LectureStatus::parse(&r.status).ok_or_else(|| {
            CatalogError::Internal(format!(
                "lecture {} has an unknown status {:?}",
                r.id, r.status
            ))
        })?;
        Ok(Lecture {
            id: r.id,
            course_id: r.course_id,
            title: r.title,
            position: r.position,
            status,
            progress_percent: r.progress_percent,
            failure_reason: r.failure_reason,
            duration_secs: r.duration_secs,
            media_kind: r.media_kind,
            playable: r.ready_asset_id.is_some(),
            ready_asset_id: r.ready_asset_id,
            original_tier: r.original_tier.as_deref().and_then(OriginalTier::parse),
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

// Lengths are counted before trimming: the API description's maxLength bounds what the
// client sends, spaces included.
fn check_title(title: &str) -> Result<String, CatalogError> {
    let t = title.trim();
    if t.is_empty() || title.chars().count() > 200 || t.chars().any(char::is_control) {
        return Err(CatalogError::Invalid(
            "title must be 1 to 200 printable characters".into(),
        ));
    }
    Ok(t.to_string())
}

fn check_description(d: &str) -> Result<String, CatalogError> {
    if d.chars().count() > 20_000 {
        return Err(CatalogError::Invalid(
            "description must be at most 20000 characters".into(),
        ));
    }
    Ok(d.trim().to_string())
}

fn check_category(category: &str) -> Result<String, CatalogError> {
    let c = category.trim();
    if category.chars().count() > 60 || c.chars().any(char::is_control) {
        return Err(CatalogError::Invalid(
            "category must be at most 60 printable characters".into(),
        ));
    }
    Ok(c.to_string())
}

fn check_price(p: i64) -> Result<i64, CatalogError> {
    if !(0..=100_000_000).contains(&p) {
        return Err(CatalogError::Invalid(
            "price_cents must be between 0 and 100000000".into(),
        ));
    }
    Ok(p)
}

pub async fn get_course(db: &Db, id: &CourseId) -> Result<Course, CatalogError> {
    let row: Option<CourseRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COURSE_COLUMNS} FROM courses c WHERE c.id = $1"
    )))
    .bind(id)
    .fetch_optional(db)
    .await?;
    row.map(Course::from_row)
        .ok_or(CatalogError::NotFound("course"))
}

/// A course the user may see: published ones for everyone, the rest for its owner
/// and admins (others get 404, not a hint that it exists).
pub async fn visible_course(
    db: &Db,
    user: &AuthUser,
    id: &CourseId,
) -> Result<Course, CatalogError> {
    let course = get_course(db, id).await?;
    if course.published || course.editable_by(user) {
        Ok(course)
    } else {
        Err(CatalogError::NotFound("course"))
    }
}

pub async fn editable_course(
    db: &Db,
    user: &AuthUser,
    id: &CourseId,
) -> Result<Course, CatalogError> {
    let course = visible_course(db, user, id).await?;
    if course.editable_by(user) {
        Ok(course)
    } else {
        Err(CatalogError::Forbidden(
            "only the course's owner may change it".into(),
        ))
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct NewCourse {
    #[schema(min_length = 1, max_length = 200)]
    pub title: String,
    #[serde(default)]
    #[schema(max_length = 20000)]
    pub description: String,
    #[serde(default)]
    #[schema(max_length = 60)]
    pub category: String,
    /// 0 for a free course.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 100000000)]
    pub price_cents: i64,
    #[serde(default)]
    pub published: bool,
    /// ISO 639-1 (`en`, `de`, …); English when left out.
    #[serde(default)]
    pub language: Option<CourseLanguage>,
}

pub async fn create_course(
    db: &Db,
    user: &AuthUser,
    new: NewCourse,
) -> Result<Course, CatalogError> {
    if user.role == Role::Student {
        return Err(CatalogError::Forbidden(
            "students cannot create courses".into(),
        ));
    }
    let id = CourseId::new();
    let now = now_unix();
    sqlx::query(
        "INSERT INTO courses (id, owner_id, title, description, category, price_cents, published, created_at, updated_at, language)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(&id)
    .bind(&user.id)
    .bind(check_title(&new.title)?)
    .bind(check_description(&new.description)?)
    .bind(check_category(&new.category)?)
    .bind(check_price(new.price_cents)?)
    .bind(new.published as i64)
    .bind(now)
    .bind(now)
    .bind(new.language.unwrap_or(CourseLanguage::ENGLISH).as_str())
    .execute(db)
    .await?;
    get_course(db, &id).await
}

#[derive(Debug, Deserialize, Default, utoipa::ToSchema)]
pub struct CoursePatch {
    #[schema(min_length = 1, max_length = 200)]
    pub title: Option<String>,
    #[schema(max_length = 20000)]
    pub description: Option<String>,
    #[schema(max_length = 60)]
    pub category: Option<String>,
    #[schema(minimum = 0, maximum = 100000000)]
    pub price_cents: Option<i64>,
    pub published: Option<bool>,
    /// ISO 639-1 (`en`, `de`, …): lectures uploaded afterwards are read in it.
    pub language: Option<CourseLanguage>,
}

pub async fn update_course(
    db: &Db,
    user: &AuthUser,
    id: &CourseId,
    patch: CoursePatch,
) -> Result<Course, CatalogError> {
    let c = editable_course(db, user, id).await?;
    let title = match patch.title {
        Some(t) => check_title(&t)?,
        None => c.title,
    };
    let description = match patch.description {
        Some(d) => check_description(&d)?,
        None => c.description,
    };
    let category = match patch.category {
        Some(x) => check_category(&x)?,
        None => c.category,
    };
    let price = match patch.price_cents {
        Some(p) => check_price(p)?,
        None => c.price_cents,
    };
    let published = patch.published.unwrap_or(c.published);
    sqlx::query(
        "UPDATE courses SET title = $1, description = $2, category = $3, price_cents = $4, published = $5, updated_at = $6, language = $8 WHERE id = $7",
    )
    .bind(title)
    .bind(description)
    .bind(category)
    .bind(price)
    .bind(published as i64)
    .bind(now_unix())
    .bind(id)
    .bind(patch.language.unwrap_or(c.language).as_str())
    .execute(db)
    .await?;
    get_course(db, id).await
}

/// Storage prefixes and keys left unreferenced by a deletion.
#[derive(Debug, Default)]
pub struct Orphans {
    pub asset_prefixes: Vec<String>,
    pub source_keys: Vec<String>,
}

/// The files of deleted assets (their folders and sources) and attachments.
fn orphans(rows: Vec<(String, String)>, attachments: Vec<String>) -> Orphans {
    let mut o = Orphans {
        source_keys: attachments,
        ..Orphans::default()
    };
    for (asset, source) in rows {
        o.asset_prefixes.push(format!("assets/{asset}"));
        o.source_keys.push(source);
    }
    o
}

/// Deletes a course with its lectures and enrollments; returns the stored files that
/// are now unreferenced.
pub async fn delete_course(
    db: &Db,
    user: &AuthUser,
    id: &CourseId,
) -> Result<Orphans, CatalogError> {
    editable_course(db, user, id).await?;
    let assets: Vec<(String, String)> = sqlx::query_as(
        "SELECT a.id, a.source_key FROM assets a JOIN lectures l ON l.id = a.lecture_id WHERE l.course_id = $1",
    )
    .bind(id)
    .fetch_all(db)
    .await?;
    let attachments = crate::attachments::stored_keys(db, Some(id), None).await?;
    let mut tx = db.begin().await?;
    sqlx::query("DELETE FROM enrollments WHERE course_id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM lectures WHERE course_id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM courses WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(orphans(assets, attachments))
}

#[derive(Debug, Deserialize, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CourseQuery {
    /// Words to search for in titles, descriptions and categories (each a prefix).
    pub q: Option<String>,
    pub category: Option<String>,
    /// 1-based; clamped to 1..=1000000.
    pub page: Option<i64>,
    /// Clamped to 1..=100; default 20.
    pub per_page: Option<i64>,
    /// Owners: list their own courses, published or not.
    pub mine: Option<bool>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub page: i64,
    pub per_page: i64,
    pub total: i64,
}

/// The words of a search: letters and digits only, lowercased, so no query built from
/// them can be malformed.
pub(crate) fn search_words(q: &str) -> Vec<String> {
    q.split_whitespace()
        .map(|w| {
            w.chars()
                .filter(|c| c.is_alphanumeric())
                .collect::<String>()
                .to_lowercase()
        })
        .filter(|w| !w.is_empty())
        .take(8)
        .collect()
}

/// A PostgreSQL tsquery matching every word of `q` as a prefix (`thermo` finds
/// "Thermodynamics").
pub(crate) fn prefix_tsquery(q: &str) -> String {
    search_words(q)
        .iter()
        .map(|w| format!("{w}:*"))
        .collect::<Vec<_>>()
        .join(" & ")
}

/// SQLite: the course's title, description or category holds the LIKE pattern bound
/// as `param`.
pub(crate) fn course_matches(param: &str) -> String {
    format!(
        "(c.title LIKE {param} ESCAPE '\\' OR c.description LIKE {param} ESCAPE '\\' OR c.category LIKE {param} ESCAPE '\\')"
    )
}

pub(crate) fn like_pattern(q: &str) -> String {
    let escaped = q
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

pub async fn list_courses(
    db: &Db,
    user: &AuthUser,
    query: CourseQuery,
) -> Result<Page<Course>, CatalogError> {
    let per_page = query.per_page.unwrap_or(20).clamp(1, 100);
    let page = query.page.unwrap_or(1).clamp(1, 1_000_000);
    let q = query
        .q
        .as_deref()
        .map(str::trim)
        .filter(|q| !q.is_empty())
        .map(|q| q.chars().take(200).collect::<String>());
    let category = query
        .category
        .as_deref()
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_string);
    let mine = query.mine.unwrap_or(false);
    let backend = lectern_seams::db::backend(db);
    // The WHERE clause holds only the filters asked for, so each statement is one the
    // planner can serve from an index (courses_listing walks published courses newest
    // first and stops at the page). Text search is PostgreSQL full-text search (prefix
    // matching per word) or, on SQLite, every word found in the title, description or
    // category.
    let mut args: Vec<String> = Vec::new();
    let mut arg = |value: String| {
        args.push(value);
        format!("${}", args.len())
    };
    let mut filters = vec![if mine {
        format!("c.owner_id = {}", arg(user.id.to_string()))
    } else {
        "c.published = 1".to_string()
    }];
    if let Some(category) = category {
        filters.push(format!("c.category = {}", arg(category)));
    }
    let mut order = "c.created_at DESC, c.id".to_string();
    match (backend, q) {
        (_, None) => {}
        (Backend::Postgres, Some(q)) => {
            let query = prefix_tsquery(&q);
            if query.is_empty() {
                // Nothing searchable in the query (only punctuation): nothing matches.
                return Ok(Page {
                    items: Vec::new(),
                    page,
                    per_page,
                    total: 0,
                });
            }
            let n = arg(query);
            filters.push(format!("c.search @@ to_tsquery('simple', {n})"));
            order = format!("ts_rank(c.search, to_tsquery('simple', {n})) DESC, {order}");
        }
        (Backend::Sqlite, Some(q)) => {
            for word in q.split_whitespace().take(8) {
                filters.push(course_matches(&arg(like_pattern(word))));
            }
        }
    }
    let filter = format!("WHERE {}", filters.join(" AND "));
    let (limit_n, offset_n) = (args.len() + 1, args.len() + 2);
    let mut count = sqlx::query_as::<_, (i64,)>(sqlx::AssertSqlSafe(format!(
        "SELECT COUNT(*) FROM courses c {filter}"
    )));
    for a in &args {
        count = count.bind(a.clone());
    }
    let (total,) = count.fetch_one(db).await?;
    // The page is cut first, so the per-course subqueries run for its rows only, not
    // for every row the OFFSET skips.
    let mut list = sqlx::query_as::<_, CourseRow>(sqlx::AssertSqlSafe(format!(
        "SELECT {COURSE_COLUMNS} FROM (SELECT * FROM courses c {filter} ORDER BY {order} LIMIT ${limit_n} OFFSET ${offset_n}) c
         ORDER BY {order}"
    )));
    for a in &args {
        list = list.bind(a.clone());
    }
    let rows = list
        .bind(per_page)
        .bind((page - 1) * per_page)
        .fetch_all(db)
        .await?;
    Ok(Page {
        items: rows.into_iter().map(Course::from_row).collect(),
        page,
        per_page,
        total,
    })
}

pub async fn lectures_of(db: &Db, course_id: &CourseId) -> Result<Vec<Lecture>, CatalogError> {
    let rows: Vec<LectureRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {LECTURE_COLUMNS} FROM lectures WHERE course_id = $1 ORDER BY position, created_at"
    )))
    .bind(course_id)
    .fetch_all(db)
    .await?;
    rows.into_iter().map(Lecture::from_row).collect()
}

pub async fn get_lecture(db: &Db, id: &LectureId) -> Result<Lecture, CatalogError> {
    let row: Option<LectureRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {LECTURE_COLUMNS} FROM lectures WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(db)
    .await?;
    row.map(Lecture::from_row)
        .transpose()?
        .ok_or(CatalogError::NotFound("lecture"))
}

/// The asset holding the poster of a ready video lecture in a published course (course
/// cards show it without a playback token).
pub async fn published_poster_asset(
    db: &Db,
    lecture_id: &LectureId,
) -> Result<Option<String>, CatalogError> {
    let row: Option<(Option<String>,)> = sqlx::query_as(
        "SELECT l.ready_asset_id FROM lectures l JOIN courses c ON c.id = l.course_id
         WHERE l.id = $1 AND c.published = 1 AND l.media_kind = 'video'",
    )
    .bind(lecture_id)
    .fetch_optional(db)
    .await?;
    Ok(row.and_then(|(asset,)| asset))
}

/// A lecture and its course, if the user may see the course.
pub async fn visible_lecture(
    db: &Db,
    user: &AuthUser,
    id: &LectureId,
) -> Result<(Lecture, Course), CatalogError> {
    let lecture = get_lecture(db, id).await?;
    let course = visible_course(db, user, &lecture.course_id)
        .await
        .map_err(|_| CatalogError::NotFound("lecture"))?;
    Ok((lecture, course))
}

/// The ladder a lecture's latest upload is encoded with, and how it was chosen.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LectureLadder {
    /// The rungs, highest first: `name`, `width`, `height`, `video_kbps`.
    #[schema(value_type = Vec<Object>)]
    pub rungs: serde_json::Value,
    /// The complexity probe's record: `method` (`per-title` or `fixed`), the sampled
    /// windows, and each fixed rung's trials (rate, SSIM), chosen rate and whether it
    /// was kept. Null for uploads made before per-title ladders.
    #[schema(value_type = Option<Object>)]
    pub report: Option<serde_json::Value>,
}

/// Why a lecture's latest upload failed, for its owner: more than the reason everyone
/// sees, never a path or an address.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LectureDiagnostics {
    pub status: LectureStatus,
    /// The reason everyone who sees the lecture sees.
    pub failure_reason: Option<String>,
    /// The last log lines of the process that probed or transcoded the file, with
    /// paths and addresses taken out; null unless the lecture failed on its file.
    pub diagnostics: Option<String>,
    /// What the probe found of the file (container, streams, size, duration); null
    /// when it was refused before.
    #[schema(value_type = Option<Object>)]
    pub source: Option<serde_json::Value>,
}

/// For the course's owner and admins.
pub async fn lecture_diagnostics(
    db: &Db,
    user: &AuthUser,
    id: &LectureId,
) -> Result<LectureDiagnostics, CatalogError> {
    let (lecture, course) = visible_lecture(db, user, id).await?;
    if !course.editable_by(user) {
        return Err(CatalogError::Forbidden(
            "only the course's owner may see a lecture's diagnostics".into(),
        ));
    }
    let row: Option<(Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT l.failure_diagnostics, a.probe FROM lectures l LEFT JOIN assets a ON a.id = l.asset_id WHERE l.id = $1",
    )
    .bind(id)
    .fetch_optional(db)
    .await?;
    let (diagnostics, probe) = row.unwrap_or_default();
    let failed = lecture.status == LectureStatus::Failed;
    Ok(LectureDiagnostics {
        status: lecture.status,
        failure_reason: lecture.failure_reason,
        diagnostics: diagnostics.filter(|_| failed),
        source: probe.as_deref().and_then(|p| serde_json::from_str(p).ok()),
    })
}

/// For the course's owner and admins: encoding details are not for students.
pub async fn lecture_ladder(
    db: &Db,
    user: &AuthUser,
    id: &LectureId,
) -> Result<LectureLadder, CatalogError> {
    let (_, course) = visible_lecture(db, user, id).await?;
    if !course.editable_by(user) {
        return Err(CatalogError::Forbidden(
            "only the course's owner may see how its lectures are encoded".into(),
        ));
    }
    let row: Option<(String, Option<String>)> =
        sqlx::query_as("SELECT a.ladder, a.ladder_report FROM lectures l JOIN assets a ON a.id = l.asset_id WHERE l.id = $1")
            .bind(id)
            .fetch_optional(db)
            .await?;
    let Some((rungs, report)) = row else {
        return Err(CatalogError::NotFound("ladder"));
    };
    let parse = |text: &str| {
        serde_json::from_str(text)
            .map_err(|e| CatalogError::Internal(format!("stored ladder: {e}")))
    };
    Ok(LectureLadder {
        rungs: parse(&rungs)?,
        report: report.as_deref().map(parse).transpose()?,
    })
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct NewLecture {
    #[schema(min_length = 1, max_length = 200)]
    pub title: String,
    /// Order within the course; default after the last lecture.
    #[schema(minimum = 0, maximum = 100000)]
    pub position: Option<i64>,
}

pub async fn create_lecture(
    db: &Db,
    user: &AuthUser,
    course_id: &CourseId,
    new: NewLecture,
) -> Result<Lecture, CatalogError> {
    editable_course(db, user, course_id).await?;
    let title = check_title(&new.title)?;
    let position = match new.position {
        Some(p) if (0..=100_000).contains(&p) => p,
        Some(_) => {
            return Err(CatalogError::Invalid(
                "position must be between 0 and 100000".into(),
            ));
        }
        None => {
            let (next,): (i64,) = sqlx::query_as(
                "SELECT COALESCE(MAX(position), 0) + 1 FROM lectures WHERE course_id = $1",
            )
            .bind(course_id)
            .fetch_one(db)
            .await?;
            next
        }
    };
    let id = LectureId::new();
    let now = now_unix();
    sqlx::query(
        "INSERT INTO lectures (id, course_id, title, position, status, progress_percent, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $7, 0, $5, $6)",
    )
    .bind(&id)
    .bind(course_id)
    .bind(title)
    .bind(position)
    .bind(now)
    .bind(now)
    .bind(LectureStatus::AwaitingUpload.as_str())
    .execute(db)
    .await?;
    sqlx::query("UPDATE courses SET updated_at = $1 WHERE id = $2")
        .bind(now)
        .bind(course_id)
        .execute(db)
        .await?;
    get_lecture(db, &id).await
}

#[derive(Debug, Deserialize, Default, utoipa::ToSchema)]
pub struct LecturePatch {
    #[schema(min_length = 1, max_length = 200)]
    pub title: Option<String>,
    #[schema(minimum = 0, maximum = 100000)]
    pub position: Option<i64>,
}

pub async fn update_lecture(
    db: &Db,
    user: &AuthUser,
    id: &LectureId,
    patch: LecturePatch,
) -> Result<Lecture, CatalogError> {
    let (lecture, course) = visible_lecture(db, user, id).await?;
    if !course.editable_by(user) {
        return Err(CatalogError::Forbidden(
            "only the course's owner may change its lectures".into(),
        ));
    }
    let title = match patch.title {
        Some(t) => check_title(&t)?,
        None => lecture.title,
    };
    let position = match patch.position {
        Some(p) if (0..=100_000).contains(&p) => p,
        Some(_) => {
            return Err(CatalogError::Invalid(
                "position must be between 0 and 100000".into(),
            ));
        }
        None => lecture.position,
    };
    sqlx::query("UPDATE lectures SET title = $1, position = $2, updated_at = $3 WHERE id = $4")
        .bind(title)
        .bind(position)
        .bind(now_unix())
        .bind(id)
        .execute(db)
        .await?;
    get_lecture(db, id).await
}

/// Deletes a lecture; returns the stored files that are now unreferenced.
pub async fn delete_lecture(
    db: &Db,
    user: &AuthUser,
    id: &LectureId,
) -> Result<Orphans, CatalogError> {
    let (_, course) = visible_lecture(db, user, id).await?;
    if !course.editable_by(user) {
        return Err(CatalogError::Forbidden(
            "only the course's owner may delete its lectures".into(),
        ));
    }
    let assets: Vec<(String, String)> =
        sqlx::query_as("SELECT id, source_key FROM assets WHERE lecture_id = $1")
            .bind(id)
            .fetch_all(db)
            .await?;
    let attachments = crate::attachments::stored_keys(db, None, Some(id)).await?;
    sqlx::query("DELETE FROM lectures WHERE id = $1")
        .bind(id)
        .execute(db)
        .await?;
    Ok(orphans(assets, attachments))
}

#[derive(Debug, Deserialize, Default, utoipa::ToSchema)]
pub struct EnrollRequest {
    /// An enrollment code from the course's owner: the way into a priced course until
    /// payments are set up (a free course needs none).
    pub code: Option<String>,
}

/// How a student came to be enrolled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EnrollmentKind {
    /// A free course.
    Subscription,
    /// A priced course, by an owner's enrollment code.
    Code,
    /// A priced course, paid (recorded before payments were checked, or by a payment
    /// provider once one is set up).
    Purchase,
}

impl EnrollmentKind {
    pub const ALL: [EnrollmentKind; 3] = [
        EnrollmentKind::Subscription,
        EnrollmentKind::Code,
        EnrollmentKind::Purchase,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EnrollmentKind::Subscription => "subscription",
            EnrollmentKind::Code => "code",
            EnrollmentKind::Purchase => "purchase",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == text)
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Enrollment {
    pub course_id: CourseId,
    pub user_id: UserId,
    pub kind: EnrollmentKind,
    /// What the student paid.
    pub price_cents: i64,
    pub created_at: i64,
}

/// Subscribes to a free course, or enrolls in a priced one with an owner's enrollment
/// code. No payment provider is set up, so nothing else enrolls anyone in a priced
/// course. Enrolling twice is harmless (and takes no second use of a code).
pub async fn enroll(
    db: &Db,
    user: &AuthUser,
    course_id: &CourseId,
    req: EnrollRequest,
) -> Result<(Enrollment, bool), CatalogError> {
    let course = get_course(db, course_id).await?;
    if !course.published && !course.editable_by(user) {
        return Err(CatalogError::NotFound("course"));
    }
    if let Some(existing) = enrollment(db, &user.id, course_id).await? {
        return Ok((existing, false));
    }
    let mut tx = db.begin().await?;
    let kind = match (
        course.price_cents,
        req.code.as_deref().filter(|c| !c.trim().is_empty()),
    ) {
        (0, _) => EnrollmentKind::Subscription,
        (_, Some(code)) => {
            crate::codes::redeem(&mut tx, course_id, code).await?;
            EnrollmentKind::Code
        }
        (price, None) => {
            return Err(CatalogError::PaymentRequired(format!(
                "this course costs ${}.{:02}; it cannot be bought here yet (no payment provider is set up): enroll with an enrollment code from its owner",
                price / 100,
                price % 100
            )));
        }
    };
    let inserted = sqlx::query(
        "INSERT INTO enrollments (user_id, course_id, kind, price_cents, created_at) VALUES ($1, $2, $3, 0, $4)
         ON CONFLICT (user_id, course_id) DO NOTHING",
    )
    .bind(&user.id)
    .bind(course_id)
    .bind(kind.as_str())
    .bind(now_unix())
    .execute(&mut *tx)
    .await?
    .rows_affected();
    // Enrolled meanwhile by another request: that one counts, and the code keeps its use.
    if inserted == 1 {
        let news = crate::journal::Draft {
            owner_id: course.owner_id.clone(),
            course_id: Some(course_id.clone()),
            event: crate::events::LiveEvent::Enrolled {
                course_id: course_id.clone(),
                user_id: user.id.clone(),
                kind,
            },
            for_students: None,
        };
        crate::journal::record_in(&mut tx, &news).await?;
        tx.commit().await?;
    }
    let e = enrollment(db, &user.id, course_id)
        .await?
        .ok_or_else(|| CatalogError::Internal("enrollment vanished".into()))?;
    Ok((e, inserted == 1))
}

pub async fn enrollment(
    db: &Db,
    user_id: &UserId,
    course_id: &CourseId,
) -> Result<Option<Enrollment>, CatalogError> {
    let row: Option<(String, i64, i64)> =
        sqlx::query_as("SELECT kind, price_cents, created_at FROM enrollments WHERE user_id = $1 AND course_id = $2")
            .bind(user_id)
            .bind(course_id)
            .fetch_optional(db)
            .await?;
    row.map(|(kind, price_cents, created_at)| {
        Ok(Enrollment {
            course_id: course_id.clone(),
            user_id: user_id.clone(),
            kind: EnrollmentKind::parse(&kind)
                .ok_or_else(|| CatalogError::Internal(format!("an enrollment of kind {kind:?}")))?,
            price_cents,
            created_at,
        })
    })
    .transpose()
}

pub async fn my_courses(db: &Db, user: &AuthUser) -> Result<Vec<Course>, CatalogError> {
    let rows: Vec<CourseRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COURSE_COLUMNS} FROM courses c JOIN enrollments e ON e.course_id = c.id WHERE e.user_id = $1 ORDER BY e.created_at DESC"
    )))
    .bind(&user.id)
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(Course::from_row).collect())
}

/// Whether the user may play the course's lectures: its owner, an admin, or enrolled.
pub async fn may_play(db: &Db, user: &AuthUser, course: &Course) -> Result<bool, CatalogError> {
    Ok(course.editable_by(user) || enrollment(db, &user.id, &course.id).await?.is_some())
}

/// Where a user stopped in a lecture.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct WatchProgress {
    pub lecture_id: LectureId,
    pub position_secs: f64,
    pub completed: bool,
    pub updated_at: i64,
}

/// Records where the user is in a lecture they may play. Positions are clamped to the
/// lecture; the last seconds count as finished.
pub async fn save_progress(
    db: &Db,
    user: &AuthUser,
    lecture_id: &LectureId,
    position_secs: f64,
) -> Result<WatchProgress, CatalogError> {
    if !position_secs.is_finite() || position_secs < 0.0 {
        return Err(CatalogError::Invalid(
            "position_secs must be a non-negative number".into(),
        ));
    }
    let (lecture, course) = visible_lecture(db, user, lecture_id).await?;
    if !may_play(db, user, &course).await? {
        return Err(CatalogError::Forbidden(
            "enroll in this course to watch its lectures".into(),
        ));
    }
    let duration = lecture.duration_secs.unwrap_or(f64::MAX);
    let position = position_secs.min(duration);
    let completed = duration != f64::MAX && position >= (duration - 5.0).max(duration * 0.95);
    let now = now_unix();
    sqlx::query(
        "INSERT INTO watch_progress (user_id, lecture_id, position_secs, completed, updated_at) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (user_id, lecture_id) DO UPDATE SET position_secs = $3, completed = $4, updated_at = $5",
    )
    .bind(&user.id)
    .bind(lecture_id)
    .bind(position)
    .bind(completed as i64)
    .bind(now)
    .execute(db)
    .await?;
    Ok(WatchProgress {
        lecture_id: lecture_id.clone(),
        position_secs: position,
        completed,
        updated_at: now,
    })
}

/// The user's progress in one lecture, if they started it.
pub async fn lecture_progress(
    db: &Db,
    user_id: &UserId,
    lecture_id: &LectureId,
) -> Result<Option<WatchProgress>, CatalogError> {
    let row: Option<(f64, i64, i64)> = sqlx::query_as(
        "SELECT position_secs, completed, updated_at FROM watch_progress WHERE user_id = $1 AND lecture_id = $2",
    )
    .bind(user_id)
    .bind(lecture_id)
    .fetch_optional(db)
    .await?;
    Ok(
        row.map(|(position_secs, completed, updated_at)| WatchProgress {
            lecture_id: lecture_id.clone(),
            position_secs,
            completed: completed != 0,
            updated_at,
        }),
    )
}

/// The user's progress in every lecture of a course, most recent first.
pub async fn course_progress(
    db: &Db,
    user_id: &UserId,
    course_id: &CourseId,
) -> Result<Vec<WatchProgress>, CatalogError> {
    let rows: Vec<(LectureId, f64, i64, i64)> = sqlx::query_as(
        "SELECT p.lecture_id, p.position_secs, p.completed, p.updated_at FROM watch_progress p
         JOIN lectures l ON l.id = p.lecture_id WHERE p.user_id = $1 AND l.course_id = $2 ORDER BY p.updated_at DESC",
    )
    .bind(user_id)
    .bind(course_id)
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(lecture_id, position_secs, completed, updated_at)| WatchProgress {
                lecture_id,
                position_secs,
                completed: completed != 0,
                updated_at,
            },
        )
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(like_pattern("50%_off"), "%50\\%\\_off%");
        assert_eq!(like_pattern("rust"), "%rust%");
    }

    #[test]
    fn tsqueries_are_prefix_words_and_never_malformed() {
        assert_eq!(prefix_tsquery("Thermo dynamics"), "thermo:* & dynamics:*");
        assert_eq!(prefix_tsquery("a&b | !c) ("), "ab:* & c:*");
        assert_eq!(prefix_tsquery("%"), "");
    }

    #[test]
    fn field_checks() {
        assert!(check_title("").is_err());
        assert!(check_title(&"x".repeat(201)).is_err());
        assert_eq!(check_title("  Intro ").unwrap(), "Intro");
        assert!(check_price(-1).is_err());
        assert!(check_price(1999).is_ok());
        assert!(check_category("a\u{7}").is_err());
        // Over the limit only with the spaces that trimming drops: still over.
        assert!(check_title(&format!("\u{a0}{}", "x".repeat(200))).is_err());
        assert!(check_category(&format!("\u{a0}{}", "x".repeat(60))).is_err());
        assert_eq!(
            check_category(&format!(" {} ", "x".repeat(58))).unwrap(),
            "x".repeat(58)
        );
    }
}

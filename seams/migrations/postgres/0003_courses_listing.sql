-- The course list walks published courses newest first and stops at the page, instead of
-- sorting every published course on each request.
CREATE INDEX courses_listing ON courses (published, created_at DESC, id);

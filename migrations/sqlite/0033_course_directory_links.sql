-- Courses linked to a directory group (src/courses.rs, "directory links"):
-- a value of an attribute a campus provider reports (an LDAP group in
-- `groups`, an OIDC claim, a CAS attribute). Its members are enrolled at each
-- sign-in and at the directory sync; the students it enrolled are unenrolled
-- when they leave it, and their VMs and layers stay (no work is deleted).
ALTER TABLE courses ADD COLUMN link_attribute TEXT;
ALTER TABLE courses ADD COLUMN link_value TEXT;

-- How a student came into a course: 'teacher' (the enrol form, a CSV) or
-- 'directory' (a course link). The directory only undoes its own enrolments.
ALTER TABLE enrolments ADD COLUMN source TEXT NOT NULL DEFAULT 'teacher'
    CONSTRAINT enrolments_source_check CHECK (source IN ('teacher', 'directory'));

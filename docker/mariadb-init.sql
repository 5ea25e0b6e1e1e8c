-- Runs once when the mariadb container initialises its data directory.
-- The image's MARIADB_USER only gets rights on MARIADB_DATABASE; tidemill's
-- tests and demos also create databases, so grant it everything (as the
-- non-Docker test bed in scripts/services-up.sh does).
GRANT ALL PRIVILEGES ON *.* TO 'tidemill'@'%' WITH GRANT OPTION;
FLUSH PRIVILEGES;

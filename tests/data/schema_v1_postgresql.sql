-- codecdash store schema, version 1 (PostgreSQL), frozen for tests/test_migrations.py.
-- Version 2 added the anchors table, experiments.bd_rate_pct and .bd_rate_anchor,
-- progress_hourly.best_bd_rate_pct and the ix_experiments_bd_rate index.
-- Never edit this file: it is what an old database looks like.

CREATE TABLE cost_daily (
	day INTEGER NOT NULL,
	component VARCHAR(16) NOT NULL,
	usd FLOAT NOT NULL,
	PRIMARY KEY (day, component)
);

CREATE TABLE cost_records (
	seq SERIAL NOT NULL,
	component VARCHAR(16) NOT NULL,
	amount_usd FLOAT NOT NULL,
	at FLOAT NOT NULL,
	description VARCHAR(500),
	source VARCHAR(100),
	PRIMARY KEY (seq)
);
CREATE INDEX ix_cost_records_at ON cost_records (at);

CREATE TABLE counters (
	name VARCHAR(64) NOT NULL,
	n BIGINT NOT NULL,
	PRIMARY KEY (name)
);

CREATE TABLE experiments (
	id VARCHAR(128) NOT NULL,
	name VARCHAR(200),
	status VARCHAR(16) NOT NULL,
	created_at FLOAT NOT NULL,
	started_at FLOAT,
	finished_at FLOAT,
	updated_at FLOAT,
	duration_s FLOAT,
	bitrate_reduction_pct FLOAT,
	psnr_db FLOAT,
	ms_ssim FLOAT,
	bpp FLOAT,
	bitrate_kbps FLOAT,
	cost_usd FLOAT,
	worker_id VARCHAR(128),
	params TEXT,
	tags TEXT,
	error TEXT,
	rd_points TEXT,
	PRIMARY KEY (id)
);
CREATE INDEX ix_experiments_created ON experiments (created_at, id);
CREATE INDEX ix_experiments_completed_psnr ON experiments (psnr_db, id) WHERE status = 'completed';
CREATE INDEX ix_experiments_completed_compression ON experiments (bitrate_reduction_pct, id) WHERE status = 'completed';
CREATE INDEX ix_experiments_completed_finished ON experiments (finished_at) WHERE status = 'completed';

CREATE TABLE heartbeats (
	seq SERIAL NOT NULL,
	worker_id VARCHAR(128) NOT NULL,
	role VARCHAR(16) NOT NULL,
	status VARCHAR(16) NOT NULL,
	at FLOAT NOT NULL,
	instance_type VARCHAR(64),
	spot BOOLEAN,
	hourly_cost_usd FLOAT,
	cpu_pct FLOAT,
	mem_pct FLOAT,
	gpu_util_pct FLOAT,
	gpu_mem_pct FLOAT,
	fps FLOAT,
	queue_depth BIGINT,
	extra TEXT,
	PRIMARY KEY (seq)
);
CREATE INDEX ix_heartbeats_role_at ON heartbeats (role, at);
CREATE INDEX ix_heartbeats_at ON heartbeats (at);

CREATE TABLE progress_hourly (
	hour INTEGER NOT NULL,
	best_compression_pct FLOAT,
	best_psnr_db FLOAT,
	best_ms_ssim FLOAT,
	PRIMARY KEY (hour)
);

CREATE TABLE schema_version (
	version INTEGER NOT NULL,
	applied_at FLOAT NOT NULL,
	PRIMARY KEY (version)
);

CREATE TABLE tokens (
	name VARCHAR(100) NOT NULL,
	scope VARCHAR(16) NOT NULL,
	token_hash VARCHAR(64) NOT NULL,
	created_at FLOAT NOT NULL,
	revoked_at FLOAT,
	PRIMARY KEY (name),
	UNIQUE (token_hash)
);

CREATE TABLE workers (
	worker_id VARCHAR(128) NOT NULL,
	role VARCHAR(16) NOT NULL,
	status VARCHAR(16) NOT NULL,
	first_seen FLOAT NOT NULL,
	last_seen FLOAT NOT NULL,
	instance_type VARCHAR(64),
	spot BOOLEAN,
	hourly_cost_usd FLOAT,
	cpu_pct FLOAT,
	mem_pct FLOAT,
	gpu_util_pct FLOAT,
	gpu_mem_pct FLOAT,
	fps FLOAT,
	queue_depth BIGINT,
	clean_shutdown BOOLEAN DEFAULT false NOT NULL,
	extra TEXT,
	PRIMARY KEY (worker_id)
);
CREATE INDEX ix_workers_role_last_seen ON workers (role, last_seen);

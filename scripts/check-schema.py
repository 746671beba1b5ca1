#!/usr/bin/env python3
"""Checks that the PostgreSQL migrations build the schema the SQLite ones do.

Applies migrations/sqlite/*.sql (or migrations/*.sql, where they lived
before issue 17) to a fresh SQLite file and migrations/postgres/*.sql to a
fresh database on a PostgreSQL cluster, then compares, table by table:
the tables and views, the columns in order with NOT NULL, the type family
(PostgreSQL's matching SQLite's affinity; integers are BIGINT), the
defaults, the unique constraints as column sets (primary keys, UNIQUE,
unique indexes, partial or not) and their names (SQLite's "UNIQUE
constraint failed:" text, which db::unique_violation reports), the
foreign keys with their ON DELETE action, the other indexes by name and
columns, the triggers by name, and the rows the migrations leave behind.
CHECK constraints' expressions are not compared (their text differs by
dialect).

Allowed differences, by design (migrations/postgres/0041_schema.sql says
why): SQLite's FTS5 table kb_fts and its shadow tables are not on
PostgreSQL; a table ordered by SQLite's implicit rowid has a last column
named rowid on PostgreSQL; the knowledge base's trigram indexes exist on
PostgreSQL only; a SQLite primary-key column counts as NOT NULL (PostgreSQL
makes it so; SQLite lets a non-INTEGER key hold NULL, which no code does).

    scripts/check-schema.py [POSTGRES_BASE_URL]

The base URL (postgres://user@host:port, no database) comes from the
argument, else PVCE_TEST_DATABASE_URL, else scripts/postgres.sh is run to
start (or find) the test cluster. Exits 1 with the differences listed.
"""

import glob
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PG_ONLY_INDEXES = {
    "kb_articles_title_trgm",
    "kb_articles_symptom_trgm",
    "kb_articles_cause_trgm",
    "kb_articles_fix_trgm",
}
PG_ROWID = "rowid"
MAX_NAME = 63
FK_ACTIONS = {"a": "NO ACTION", "r": "RESTRICT", "c": "CASCADE", "n": "SET NULL", "d": "SET DEFAULT"}


def sqlite_dir():
    moved = os.path.join(ROOT, "migrations", "sqlite")
    return moved if os.path.isdir(moved) else os.path.join(ROOT, "migrations")


def affinity(decl):
    """SQLite's column affinity of a declared type (datatype3.html, 3.1)."""
    d = (decl or "").upper()
    if "INT" in d:
        return "integer"
    if any(s in d for s in ("CHAR", "CLOB", "TEXT")):
        return "text"
    if d == "" or "BLOB" in d:
        return "blob"
    if any(s in d for s in ("REAL", "FLOA", "DOUB")):
        return "real"
    return "numeric"


def pg_family(t):
    return {
        "bigint": "integer",
        "integer": "integer",
        "smallint": "integer",
        "text": "text",
        "character varying": "text",
        "double precision": "real",
        "real": "real",
        "bytea": "blob",
        "numeric": "numeric",
    }.get(t, t)


def norm_default(d):
    """A default as comparable text: casts, collations and parentheses off."""
    if d is None:
        return None
    d = re.sub(r"::[a-z ]+", "", d)
    d = re.sub(r' COLLATE "?\w+"?', "", d)
    while d.startswith("(") and d.endswith(")"):
        d = d[1:-1]
    return d.strip()


def unique_name(table, cols):
    """SQLite's text in "UNIQUE constraint failed: <...>" for these columns."""
    return ", ".join(f"{table}.{c}" for c in cols)


# --- SQLite -----------------------------------------------------------------


def sqlite_schema(path):
    con = sqlite3.connect(path)
    files = sorted(glob.glob(os.path.join(sqlite_dir(), "[0-9]*_*.sql")))
    if not files:
        sys.exit("check-schema: no SQLite migrations found")
    for f in files:
        with open(f, encoding="utf-8") as fh:
            con.executescript(fh.read())
    s = {"tables": {}, "views": {}, "triggers": set()}
    # FTS5 tables and their shadow tables (kb_fts, kb_fts_data, ...) are SQLite's search.
    fts = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND sql LIKE 'CREATE VIRTUAL TABLE%'")]
    skip = lambda n: n.startswith("sqlite_") or any(n == f or n.startswith(f + "_") for f in fts)
    tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
    for t in tables:
        if skip(t):
            continue
        cols = con.execute(f"PRAGMA table_info('{t}')").fetchall()
        pk = [r[1] for r in sorted((r for r in cols if r[5]), key=lambda r: r[5])]
        info = {
            "columns": [
                {"name": r[1], "family": affinity(r[2]), "notnull": bool(r[3]) or bool(r[5]), "default": norm_default(r[4])}
                for r in cols
            ],
            "unique": {},
            "indexes": {},
            "fks": set(),
            "rows": con.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0],
            "without_rowid": bool(con.execute("SELECT sql LIKE '%WITHOUT ROWID%' FROM sqlite_master WHERE name = ?", (t,)).fetchone()[0]),
        }
        if pk:
            info["unique"][tuple(pk)] = {"partial": False, "name": unique_name(t, pk)}
        for _, name, uniq, origin, partial in con.execute(f"PRAGMA index_list('{t}')"):
            if origin == "pk":
                continue
            cols_ = tuple(r[2] for r in con.execute(f"PRAGMA index_info('{name}')"))
            if uniq:
                info["unique"][cols_] = {"partial": bool(partial), "name": unique_name(t, cols_)}
            else:
                info["indexes"][name] = {"columns": cols_, "partial": bool(partial)}
        pk_of = lambda ref: [r[1] for r in sorted((r for r in con.execute(f"PRAGMA table_info('{ref}')") if r[5]), key=lambda r: r[5])]
        fks = {}
        for r in con.execute(f"PRAGMA foreign_key_list('{t}')"):
            fid, seq, ref, frm, to, _upd, on_delete = r[:7]
            fks.setdefault(fid, {"from": [], "ref": ref, "to": [], "on_delete": on_delete})
            fks[fid]["from"].append(frm)
            fks[fid]["to"].append(to)
        for fk in fks.values():
            to = fk["to"] if all(fk["to"]) else pk_of(fk["ref"])
            info["fks"].add((tuple(fk["from"]), fk["ref"], tuple(to), fk["on_delete"]))
        s["tables"][t] = info
    for (v,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'view' ORDER BY name"):
        s["views"][v] = [r[1] for r in con.execute(f"PRAGMA table_info('{v}')")]
    s["triggers"] = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")}
    con.close()
    return s


# --- PostgreSQL -------------------------------------------------------------


def psql(url, *args, stdin=None):
    return subprocess.run(
        ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url, *args],
        input=stdin, capture_output=True, text=True, check=False,
    )


def pg_rows(url, sql):
    r = psql(url, "-A", "-t", "-F", "\x1f", "-c", sql)
    if r.returncode != 0:
        sys.exit(f"check-schema: psql failed: {r.stderr.strip()}\n{sql}")
    return [line.split("\x1f") for line in r.stdout.splitlines() if line]


def pg_schema(url):
    files = sorted(glob.glob(os.path.join(ROOT, "migrations", "postgres", "[0-9]*_*.sql")))
    if not files:
        sys.exit("check-schema: no migrations in migrations/postgres")
    for f in files:
        r = psql(url, "-1", "-f", f)
        if r.returncode != 0:
            sys.exit(f"check-schema: {os.path.relpath(f, ROOT)} failed on PostgreSQL:\n{r.stderr.strip()}")
    s = {"tables": {}, "views": {}, "triggers": set()}
    for (t,) in pg_rows(url, "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"):
        cols = pg_rows(url, f"""
            SELECT column_name, data_type, is_nullable, coalesce(column_default, ''), is_identity
            FROM information_schema.columns WHERE table_schema = 'public' AND table_name = '{t}'
            ORDER BY ordinal_position""")
        info = {
            "columns": [
                {"name": c, "type": ty, "family": pg_family(ty), "notnull": n == "NO",
                 "default": norm_default(d) if d else None, "identity": ident == "YES"}
                for c, ty, n, d, ident in cols
            ],
            "unique": {},
            "indexes": {},
            "fks": set(),
            "rows": int(pg_rows(url, f'SELECT COUNT(*) FROM "{t}"')[0][0]),
        }
        # Every index with its key columns ('' for an expression), uniqueness and predicate.
        for name, uniq, partial, keys in pg_rows(url, f"""
            SELECT c.relname, i.indisunique, i.indpred IS NOT NULL,
                   (SELECT string_agg(coalesce(a.attname, ''), ',' ORDER BY k.n)
                    FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, n)
                    LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum)
            FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
            WHERE i.indrelid = 'public."{t}"'::regclass"""):
            cols_ = tuple(k or None for k in keys.split(","))
            if uniq == "t":
                info["unique"][cols_] = {"partial": partial == "t", "name": name}
            else:
                info["indexes"][name] = {"columns": cols_, "partial": partial == "t"}
        for frm, ref, to, deltype in pg_rows(url, f"""
            SELECT (SELECT string_agg(a.attname, ',' ORDER BY k.n) FROM unnest(c.conkey) WITH ORDINALITY AS k(attnum, n)
                    JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum),
                   c.confrelid::regclass::text,
                   (SELECT string_agg(a.attname, ',' ORDER BY k.n) FROM unnest(c.confkey) WITH ORDINALITY AS k(attnum, n)
                    JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.attnum),
                   c.confdeltype
            FROM pg_constraint c WHERE c.contype = 'f' AND c.conrelid = 'public."{t}"'::regclass"""):
            info["fks"].add((tuple(frm.split(",")), ref.strip('"'), tuple(to.split(",")), FK_ACTIONS[deltype]))
        s["tables"][t] = info
    for (v,) in pg_rows(url, "SELECT table_name FROM information_schema.views WHERE table_schema = 'public'"):
        s["views"][v] = [r[0] for r in pg_rows(url, f"""
            SELECT column_name FROM information_schema.columns
            WHERE table_schema = 'public' AND table_name = '{v}' ORDER BY ordinal_position""")]
    s["triggers"] = {r[0] for r in pg_rows(url, """
        SELECT tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE NOT t.tgisinternal AND n.nspname = 'public'""")}
    return s


# --- comparison -------------------------------------------------------------


def compare(sq, pg):
    diffs = []
    d = diffs.append
    for t in sorted(set(sq["tables"]) - set(pg["tables"])):
        d(f"table {t}: in SQLite, not in PostgreSQL")
    for t in sorted(set(pg["tables"]) - set(sq["tables"])):
        d(f"table {t}: in PostgreSQL, not in SQLite")
    for t in sorted(set(sq["tables"]) & set(pg["tables"])):
        s, p = sq["tables"][t], pg["tables"][t]
        scols, pcols = s["columns"], list(p["columns"])
        # The rowid stand-in: a last identity column named rowid, for a table that has a rowid.
        if pcols and pcols[-1]["name"] == PG_ROWID and not any(c["name"] == PG_ROWID for c in scols):
            last = pcols.pop()
            if s["without_rowid"]:
                d(f"table {t}: has a rowid column on PostgreSQL, but is WITHOUT ROWID on SQLite")
            elif not (last["identity"] and last["type"] == "bigint"):
                d(f"table {t}: its rowid column is not a BIGINT identity")
        snames, pnames = [c["name"] for c in scols], [c["name"] for c in pcols]
        if snames != pnames:
            d(f"table {t}: columns differ\n    sqlite:   {', '.join(snames)}\n    postgres: {', '.join(pnames)}")
        for sc, pc in zip(scols, pcols):
            if sc["name"] != pc["name"]:
                continue
            where = f"table {t}, column {sc['name']}"
            if sc["family"] != pc["family"]:
                d(f"{where}: SQLite affinity {sc['family']}, PostgreSQL type {pc['type']}")
            elif pc["family"] == "integer" and pc["type"] != "bigint":
                d(f"{where}: PostgreSQL type {pc['type']}, not bigint")
            if sc["notnull"] != pc["notnull"]:
                d(f"{where}: NOT NULL on {'SQLite' if sc['notnull'] else 'PostgreSQL'} only")
            if sc["default"] != pc["default"] and not pc["identity"]:
                d(f"{where}: default {sc['default']!r} on SQLite, {pc['default']!r} on PostgreSQL")
        for cols in sorted(set(s["unique"]) | set(p["unique"]), key=str):
            su, pu = s["unique"].get(cols), p["unique"].get(cols)
            what = f"table {t}: unique ({', '.join(c or '<expr>' for c in cols)})"
            if su is None or pu is None:
                d(f"{what}: on {'SQLite' if pu is None else 'PostgreSQL'} only")
                continue
            if su["partial"] != pu["partial"]:
                d(f"{what}: partial on {'SQLite' if su['partial'] else 'PostgreSQL'} only")
            want = su["name"]
            if len(want.encode()) <= MAX_NAME and pu["name"] != want:
                d(f'{what}: named "{pu["name"]}" on PostgreSQL, not "{want}" (SQLite\'s error text)')
        for name in sorted(set(s["indexes"]) | set(p["indexes"]) - PG_ONLY_INDEXES):
            si, pi = s["indexes"].get(name), p["indexes"].get(name)
            if si is None or pi is None:
                d(f"table {t}: index {name} on {'SQLite' if pi is None else 'PostgreSQL'} only")
            elif si != pi:
                d(f"table {t}: index {name} differs: SQLite {si}, PostgreSQL {pi}")
        for fk in sorted(s["fks"] ^ p["fks"], key=str):
            frm, ref, to, act = fk
            d(f"table {t}: foreign key ({', '.join(frm)}) -> {ref}({', '.join(to)}) ON DELETE {act} "
              f"on {'SQLite' if fk in s['fks'] else 'PostgreSQL'} only")
        if s["rows"] != p["rows"]:
            d(f"table {t}: the migrations leave {s['rows']} rows on SQLite, {p['rows']} on PostgreSQL")
    for v in sorted(set(sq["views"]) | set(pg["views"])):
        sv, pv = sq["views"].get(v), pg["views"].get(v)
        if sv is None or pv is None:
            d(f"view {v}: on {'SQLite' if pv is None else 'PostgreSQL'} only")
        elif sv != pv:
            d(f"view {v}: columns differ\n    sqlite:   {', '.join(sv)}\n    postgres: {', '.join(pv)}")
    for tr in sorted(sq["triggers"] ^ pg["triggers"]):
        d(f"trigger {tr}: on {'SQLite' if tr in sq['triggers'] else 'PostgreSQL'} only")
    return diffs


def base_url():
    if len(sys.argv) > 1:
        return sys.argv[1]
    if os.environ.get("PVCE_TEST_DATABASE_URL"):
        return os.environ["PVCE_TEST_DATABASE_URL"]
    r = subprocess.run(["bash", os.path.join(ROOT, "scripts", "postgres.sh")], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"check-schema: scripts/postgres.sh failed:\n{r.stderr.strip()}")
    return r.stdout.strip().splitlines()[-1]


def main():
    base = base_url().rstrip("/")
    db = f"check_schema_{uuid.uuid4().hex[:12]}"
    with tempfile.TemporaryDirectory() as tmp:
        sq = sqlite_schema(os.path.join(tmp, "check.db"))
    admin = f"{base}/postgres"
    r = psql(admin, "-c", f'CREATE DATABASE "{db}"')
    if r.returncode != 0:
        sys.exit(f"check-schema: cannot create a database on {base}: {r.stderr.strip()}")
    try:
        pg = pg_schema(f"{base}/{db}")
    finally:
        psql(admin, "-c", f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    diffs = compare(sq, pg)
    ntables = len(sq["tables"])
    if diffs:
        print(f"check-schema: SQLite ({os.path.relpath(sqlite_dir(), ROOT)}) and PostgreSQL (migrations/postgres) differ:")
        for x in diffs:
            print(f"  - {x}")
        sys.exit(1)
    print(f"check-schema: the same schema on SQLite and PostgreSQL: {ntables} tables, "
          f"{len(sq['views'])} views, {len(sq['triggers'])} triggers")


if __name__ == "__main__":
    main()

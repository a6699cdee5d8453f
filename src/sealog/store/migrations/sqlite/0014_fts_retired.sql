-- Full-text indexes an org no longer uses: after a purge that left it few events, the org
-- gets a new index of those (orgs.num names it), and the old one is emptied a few pages a
-- transaction, then dropped (release_emptied_storage): dropped at once, a large index
-- would hold the writer while its pages are freed.
CREATE TABLE fts_retired (
    name  TEXT PRIMARY KEY
);

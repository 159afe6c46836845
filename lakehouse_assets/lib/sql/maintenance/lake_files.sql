-- The data and delete files the catalog of the lake (attached as `lake`) lists, and their bytes.
WITH lake_file AS (
    SELECT file_size_bytes FROM __ducklake_metadata_lake.ducklake_data_file
    UNION ALL
    SELECT file_size_bytes FROM __ducklake_metadata_lake.ducklake_delete_file
)

SELECT
    count(*) AS files,
    coalesce(sum(file_size_bytes), 0) AS size_bytes
FROM lake_file

module sessionlake/tools/postload

go 1.22

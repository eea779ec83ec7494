"""The catalogue of pinned methods: where manifests live and how names resolve
(`lookup`), their schema (`manifest`), `--method` resolution and verification
(`methods`), downloads (`download`, `fetch`) and submissions (`submit`)."""

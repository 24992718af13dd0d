"""dbt's words in the SQL (`ref`, `source`, `env_var`): no secret read from the environment,
no unknown model or source, no computed names, each refused at `plan` and `run`."""
from __future__ import annotations

import json

from . import BASE, Case

_MANIFEST = json.dumps({
    "metadata": {"project_name": "shop"},
    "nodes": {"model.shop.stg_reviews": {
        "unique_id": "model.shop.stg_reviews", "resource_type": "model", "name": "stg_reviews",
        "package_name": "shop", "database": "w", "schema": "main", "alias": "reviews"}},
    "sources": {},
})
# a dbt project in the job's folder whose warehouse is the harness's w.duckdb
PROJECT = {"dbt_project.yml": "name: shop\nprofile: shop\n", "target/manifest.json": _MANIFEST}
LONG_KEY = "sk-" + "q" * 40

CASES = [
    Case("dbt-env-var-api-key", BASE,
         sql="SELECT id, {{ env_var('OPENAI_API_KEY') }} AS text FROM reviews",
         files=PROJECT, env={"OPENAI_API_KEY": LONG_KEY},
         message=r"env_var\('OPENAI_API_KEY'\): a job file may not read a variable that holds "
                 r"a secret"),
    Case("dbt-env-var-secret-with-default", BASE,
         sql="SELECT id, text || {{ env_var('DBT_ENV_SECRET_PG', '') }} AS text FROM reviews",
         files=PROJECT, env={"DBT_ENV_SECRET_PG": "hunter2hunter2hunter2"},
         message=r"may not read a variable that holds a secret"),
    Case("dbt-env-var-holding-a-key", BASE,
         sql="SELECT id, {{ env_var('HARMLESS_LOOKING') }} AS text FROM reviews",
         files=PROJECT, env={"OPENAI_API_KEY": LONG_KEY, "HARMLESS_LOOKING": LONG_KEY},
         message=r"holds the value of an API key variable"),
    Case("dbt-ref-unknown-model", BASE,
         sql="SELECT id, text FROM {{ ref('stg_review') }}", files=PROJECT,
         message=r"job\.sql:4:25: ref\('stg_review'\): .*no model stg_review\n.*did you mean "
                 r"'stg_reviews'"),
    Case("dbt-ref-without-project", BASE,
         sql="SELECT id, text FROM {{ ref('reviews') }}",
         message=r"ref\(\) needs a dbt project, and none was found \(looked in"),
    Case("dbt-ref-computed-name", BASE,
         sql="SELECT id, text FROM {{ ref(env_var('T', 'reviews')) }}", files=PROJECT,
         message=r"with literal arguments"),
    Case("dbt-source-unknown", BASE,
         sql="SELECT id, text FROM {{ source('shop', 'reviews') }}", files=PROJECT,
         message=r"no such source table"),
]

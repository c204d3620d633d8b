#!/usr/bin/env bash
# The MySQL users of LMS, each with only the privileges it needs (README, "Database users"):
#
#   LMS_MIGRATE_USER (lms_migrate)  `lms migrate`: CREATE, ALTER, INDEX (the schema), SELECT,
#                                   INSERT (schema_migrations) and UPDATE (data migrations)
#   LMS_MON_USER     (lms_mon)      `lms mon`: SELECT, INSERT; the batch writer only inserts
#                                   (service_logs, service_severity, rejected_messages) and
#                                   reads service_logs and schema_migrations, except that it
#                                   upserts the request, commit and pattern rollups: UPDATE on
#                                   those nine tables only (with CREATE on them: MySQL and MariaDB refuse a
#                                   table grant before the table exists unless it holds
#                                   CREATE, and this runs before `lms migrate`; without DROP
#                                   or ALTER it lets lms_mon do nothing to an existing table)
#   LMS_API_USER     (lms_api)      `lms api`, `lms logs`, `lms stats`: SELECT
#   LMS_RETENTION_USER (lms_retention)  `lms retention`: SELECT, INSERT, UPDATE, DELETE (it
#                                   deletes expired rows, merges rollup rows and drains
#                                   service_severity); made only when its password is set
#
# on the database LMS_DATABASE (else MYSQL_DATABASE, else lms), for connections from
# LMS_USER_HOST (default '%': any host; a subnet like '10.0.%' is tighter). Passwords come
# from LMS_MIGRATE_PASSWORD, LMS_MON_PASSWORD and LMS_API_DB_PASSWORD, all required, and
# LMS_RETENTION_PASSWORD, optional (no retention user without it).
#
#   deploy/mysql/lms-users.sh --print | mysql -uroot -p     prints the SQL (any server)
#   deploy/mysql/lms-users.sh                               runs it as root on the local
#       server's socket with MYSQL_ROOT_PASSWORD: what the mysql image does with the files of
#       /docker-entrypoint-initdb.d/ at its first start (docker-compose.yml mounts it there)
#
# Safe to run again: existing users get the given password and the grants, nothing else.
# Works on MySQL 8 and MariaDB 10.6+. Written to be executed or sourced (the image sources a
# script that is not executable), so it sets no shell options and leaves no variables behind.

lms_users_sql() {
    local database="${LMS_DATABASE:-${MYSQL_DATABASE:-lms}}"
    local host="${LMS_USER_HOST:-%}"
    local -a mon_upserted=(
        request_rollup request_rollup_day request_users request_users_day request_users_all_day commit_rollup
        pattern_rollup pattern_rollup_day pattern_service_rollup pattern_service_rollup_day
    )
    local -a users=(
        "${LMS_MIGRATE_USER:-lms_migrate}|LMS_MIGRATE_PASSWORD|CREATE, ALTER, INDEX, SELECT, INSERT, UPDATE|required"
        "${LMS_MON_USER:-lms_mon}|LMS_MON_PASSWORD|SELECT, INSERT|required"
        "${LMS_API_USER:-lms_api}|LMS_API_DB_PASSWORD|SELECT|required"
        "${LMS_RETENTION_USER:-lms_retention}|LMS_RETENTION_PASSWORD|SELECT, INSERT, UPDATE, DELETE|optional"
    )
    if [[ ! "$database" =~ ^[A-Za-z0-9_]{1,64}$ ]]; then
        echo "lms-users.sh: database name '$database' must be letters, digits and _" >&2
        return 2
    fi
    if [[ ! "$host" =~ ^[A-Za-z0-9_.%:-]{1,255}$ ]]; then
        echo "lms-users.sh: LMS_USER_HOST '$host' is not a host name, address or pattern" >&2
        return 2
    fi
    local entry user variable privileges need password table
    for entry in "${users[@]}"; do
        IFS='|' read -r user variable privileges need <<<"$entry"
        password="${!variable:-}"
        if [[ -z "$password" && "$need" == "optional" ]]; then
            continue
        fi
        if [[ ! "$user" =~ ^[A-Za-z0-9_]{1,32}$ ]]; then
            echo "lms-users.sh: user name '$user' must be 1-32 letters, digits and _" >&2
            return 2
        fi
        if [[ -z "$password" ]]; then
            echo "lms-users.sh: $variable is not set (the password of $user)" >&2
            return 2
        fi
        if [[ "$password" == *"'"* || "$password" == *"\\"* ]]; then
            echo "lms-users.sh: $variable must not contain ' or \\" >&2
            return 2
        fi
        printf "CREATE USER IF NOT EXISTS '%s'@'%s' IDENTIFIED BY '%s';\n" "$user" "$host" "$password"
        printf "ALTER USER '%s'@'%s' IDENTIFIED BY '%s';\n" "$user" "$host" "$password"
        printf "GRANT %s ON \`%s\`.* TO '%s'@'%s';\n" "$privileges" "$database" "$user" "$host"
        if [[ "$variable" == LMS_MON_PASSWORD ]]; then
            for table in "${mon_upserted[@]}"; do
                printf "GRANT CREATE, UPDATE ON \`%s\`.\`%s\` TO '%s'@'%s';\n" \
                    "$database" "$table" "$user" "$host"
            done
        fi
    done
}

lms_users_main() {
    local sql
    # All of it or nothing: a missing password must not leave the users before it created.
    sql="$(lms_users_sql)" || return
    if [[ "${1:-}" == "--print" ]]; then
        printf '%s\n' "$sql"
        return
    fi
    # SOCKET is the image entrypoint's (when it sources this); executed, the default socket.
    MYSQL_PWD="${MYSQL_ROOT_PASSWORD:-}" mysql --protocol=socket ${SOCKET:+--socket="$SOCKET"} \
        -uroot <<<"$sql"
}

lms_users_main "$@" || exit
unset -f lms_users_sql lms_users_main

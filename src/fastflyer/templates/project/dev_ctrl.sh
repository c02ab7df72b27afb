#!/usr/bin/env bash
# Development container of {{project_name}}: the code is mounted, the server reloads on change.
set -euo pipefail
cd "$(dirname "$0")"

NAME="${FLYER_DEV_CONTAINER:-{{project_name}}-dev}"
IMAGE="${FLYER_DEV_IMAGE:-python:3.11-slim}"
PORT="${flyer_port:-8080}"
# The FastFlyer SDK this project was generated with (a wheel in wheels/ with --bundle-sdk).
FASTFLYER_SPEC="${FASTFLYER_SPEC:-{{fastflyer_spec}}}"

usage() {
    cat <<USAGE
欢迎使用 FastFlyer 开发环境辅助工具。
用法: ./dev_ctrl.sh <OPTION>
命令:
    start          启动开发容器
    show [D]       查看开发容器 (D: 详细信息)
    login          进入开发容器
    update         更新容器插件 (重新安装依赖)
    restart        重启开发容器
    reset          重建开发容器
    destroy        销毁开发容器
    log [COUNT]    查看容器日志 (默认最后 100 行)
USAGE
}

exists() { docker container inspect "$NAME" >/dev/null 2>&1; }

start() {
    if exists; then
        docker start "$NAME" >/dev/null
    else
        docker run -d --name "$NAME" -p "$PORT:$PORT" -e "flyer_port=$PORT" -e flyer_reload=1 \
            -e "FASTFLYER_SPEC=$FASTFLYER_SPEC" -v "$PWD:/app" -w /app "$IMAGE" \
            sh -c 'pip install --no-cache-dir "$FASTFLYER_SPEC" -r requirements.txt && ./start-reload.sh' \
            >/dev/null
    fi
    echo "started $NAME: http://127.0.0.1:$PORT{{prefix}}/docs"
}

show() {
    if [ "${1:-}" = "D" ]; then
        docker container inspect "$NAME"
    else
        docker ps -a --filter "name=^${NAME}\$"
    fi
}

update() {
    docker exec "$NAME" pip install --no-cache-dir "$FASTFLYER_SPEC" -r requirements.txt
    docker restart "$NAME" >/dev/null
}

destroy() {
    if exists; then
        docker rm -f "$NAME" >/dev/null
        echo "destroyed $NAME"
    fi
}

command="${1:-help}"
case "$command" in
    start) start ;;
    show) show "${2:-}" ;;
    login) docker exec -it "$NAME" bash ;;
    update) update ;;
    restart) docker restart "$NAME" >/dev/null && echo "restarted $NAME" ;;
    reset) destroy; start ;;
    destroy) destroy ;;
    log) docker logs --tail "${2:-100}" "$NAME" ;;
    help | -h | --help) usage ;;
    *) echo "unknown command: $command" >&2; usage >&2; exit 2 ;;
esac

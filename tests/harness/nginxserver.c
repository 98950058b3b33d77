/*
 * nginxserver.c — see nginxserver.h.
 *
 * Ports: two loopback ports are picked by binding port 0 and closing the socket; nginx binds them
 * right after. Another process could take one in between, so a start that fails is retried with
 * new ports a few times.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "nginxserver.h"
#include "serverutil.h"

#define NGINX "/usr/sbin/nginx"
#define ECHO_MODULE "/usr/lib/nginx/modules/ngx_http_echo_module.so"

unsigned char lt_nginx_byte(size_t i) { return (unsigned char)('A' + (i * 7 + i / 1024) % 58); }

static bool write_pattern(const char *dir, const char *name, size_t n) {
    char path[512];
    snprintf(path, sizeof path, "%s/www/%s", dir, name);
    char *d = malloc(n ? n : 1);
    if (!d) return false;
    for (size_t i = 0; i < n; i++) d[i] = (char)lt_nginx_byte(i);
    bool ok = lt_write_file(path, d, n);
    free(d);
    return ok;
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static const char *locations =
    "        location /text/ { gzip on; gzip_types text/plain; gzip_min_length 1; }\n"
    "        location = /r301 { return 301 /method; }\n"
    "        location = /r302 { return 302 /method; }\n"
    "        location = /r303 { return 303 /method; }\n"
    "        location = /r307 { return 307 /method; }\n"
    "        location = /r308 { return 308 /method; }\n"
    "        location = /loop/a { return 302 /loop/b; }\n"
    "        location = /loop/b { return 302 /loop/a; }\n"
    "        location = /status/204 { return 204; }\n"
    "        location = /status/304 { return 304; }\n"
    "        location = /status/404 { return 404 \"not here\\n\"; }\n"
    /* HTTP client: the retry policy and the cookie jar */
    "        location = /status/503 { add_header Retry-After 1 always; return 503 \"busy\\n\"; }\n"
    "        location = /cookie/set { add_header Set-Cookie \"a=1; Path=/\";"
    " add_header Set-Cookie \"p=2; Path=/cookie; HttpOnly\";"
    " add_header Set-Cookie \"sup=3; Domain=com\"; add_header Set-Cookie \"sec=4; Secure\";"
    " add_header Set-Cookie \"gone=5; Max-Age=0\"; return 200 \"set\\n\"; }\n";

/* /chain/N -> /chain/N-1: nginx cannot count, so the chain is spelled out (N <= 12) */
static void chain_locations(FILE *f) {
    for (int i = 1; i <= 12; i++)
        fprintf(f, "        location = /chain/%d { return 302 /chain/%d; }\n", i, i - 1);
    fprintf(f, "        location = /chain/0 { return 302 /small.txt; }\n");
}

static const char *echo_locations =
    "        location = /method { echo_read_request_body; echo -n \"$request_method \";"
    " echo_request_body; }\n"
    "        location = /headers { echo -n \"auth=$http_authorization|cookie=$http_cookie|"
    "ua=$http_user_agent|ae=$http_accept_encoding\"; }\n"
    "        location = /chunked { echo \"line 0\"; echo_flush; echo \"line 1\"; echo_flush;"
    " echo \"line 2\"; echo_flush; echo \"line 3\"; echo_flush; echo \"line 4\"; }\n"
    "        location = /slow { echo -n a; echo_flush; echo_sleep 2; echo -n b; }\n"
    "        location = /cookie/headers { echo -n \"cookie=$http_cookie\"; }\n";

static bool write_conf(lt_nginx *n) {
    char path[512];
    snprintf(path, sizeof path, "%s/nginx.conf", n->dir);
    FILE *f = fopen(path, "w");
    if (!f) return false;
    if (n->echo) fprintf(f, "load_module %s;\n", ECHO_MODULE);
    if (geteuid() == 0) fprintf(f, "user root;\n");
    fprintf(f,
            "worker_processes 1;\n"
            "pid %s/nginx.pid;\n"
            "error_log %s/error.log warn;\n"
            "events { worker_connections 4096; }\n"
            "http {\n"
            "    access_log off;\n"
            "    client_body_temp_path %s/tmp/body;\n"
            "    proxy_temp_path %s/tmp/proxy;\n"
            "    fastcgi_temp_path %s/tmp/fastcgi;\n"
            "    uwsgi_temp_path %s/tmp/uwsgi;\n"
            "    scgi_temp_path %s/tmp/scgi;\n"
            "    default_type application/octet-stream;\n"
            "    types { text/plain txt; }\n"
            "    keepalive_requests 100000;\n"
            "    keepalive_timeout 60s;\n"
            "    sendfile on;\n"
            "    tcp_nopush on;\n",
            n->dir, n->dir, n->dir, n->dir, n->dir, n->dir, n->dir);
    for (int tls = 0; tls < 2; tls++) {
        fprintf(f, "    server {\n");
        if (tls) {
            fprintf(f,
                    "        listen 127.0.0.1:%d ssl;\n"
                    "        ssl_certificate %s/cert.pem;\n"
                    "        ssl_certificate_key %s/key.pem;\n",
                    n->tls_port, n->dir, n->dir);
        } else {
            fprintf(f, "        listen 127.0.0.1:%d;\n", n->port);
        }
        fprintf(f, "        server_name localhost;\n        root %s/www;\n", n->dir);
        fprintf(f, "        location = /to-https { return 302 https://localhost:%d/small.txt; }\n",
                n->tls_port);
        fprintf(f, "        location = /to-http { return 302 http://127.0.0.1:%d/small.txt; }\n",
                n->port);
        fprintf(f, "        location = /xo/headers { return 302 http://localhost:%d/headers; }\n",
                n->port);
        fprintf(f, "        location = /so/headers { return 307 /headers; }\n");
        fputs(locations, f);
        chain_locations(f);
        if (n->echo) fputs(echo_locations, f);
        fprintf(f, "    }\n");
    }
    fprintf(f, "}\n");
    return fclose(f) == 0;
}

static bool make_files(lt_nginx *n) {
    char p[512];
    snprintf(p, sizeof p, "%s/www", n->dir);
    if (mkdir(p, 0755)) return false;
    snprintf(p, sizeof p, "%s/www/text", n->dir);
    if (mkdir(p, 0755)) return false;
    snprintf(p, sizeof p, "%s/tmp", n->dir);
    if (mkdir(p, 0755)) return false;
    snprintf(p, sizeof p, "%s/www/small.txt", n->dir);
    if (!lt_write_file(p, "hello, world\n", 13)) return false;
    if (!write_pattern(n->dir, "1k.bin", 1024) || !write_pattern(n->dir, "64k.bin", 65536) ||
        !write_pattern(n->dir, "1m.bin", 1 << 20))
        return false;
    snprintf(p, sizeof p, "%s/www/text/big.txt", n->dir);
    FILE *f = fopen(p, "w");
    if (!f) return false;
    for (int i = 0; i < 300 * 1024 / 32; i++) fprintf(f, "line %08d of some text ....\n", i);
    if (fclose(f)) return false;
    /* the certificate: self-signed, for localhost and 127.0.0.1 */
    char key[320];
    snprintf(key, sizeof key, "%s/key.pem", n->dir);
    snprintf(n->cert, sizeof n->cert, "%s/cert.pem", n->dir);
    if (!lt_self_signed_cert(key, n->cert)) {
        fprintf(stderr, "nginxserver: openssl could not make a certificate\n");
        return false;
    }
    return true;
}

static bool launch(lt_nginx *n) {
    char conf[400], errlog[400];
    snprintf(conf, sizeof conf, "%s/nginx.conf", n->dir);
    snprintf(errlog, sizeof errlog, "%s/error.log", n->dir);
    pid_t pid = fork();
    if (pid < 0) return false;
    if (pid == 0) {
        int null = open("/dev/null", O_RDWR);
        if (null >= 0) {
            dup2(null, 0);
            dup2(null, 1);
            dup2(null, 2);
        }
        execl(NGINX, "nginx", "-p", n->dir, "-c", conf, "-e", errlog, "-g", "daemon off;",
              (char *)NULL);
        _exit(127);
    }
    n->pid = pid;
    for (int i = 0; i < 500; i++) { /* up to 5 s */
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            n->pid = 0;
            return false;
        }
        if (lt_port_open(n->port) && lt_port_open(n->tls_port)) return true;
        sleep_ms(10);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    n->pid = 0;
    return false;
}

bool lt_nginx_start(lt_nginx *n) {
    memset(n, 0, sizeof *n);
    if (access(NGINX, X_OK) != 0 || access("/usr/bin/openssl", X_OK) != 0) {
        fprintf(stderr, "nginxserver: %s or openssl not installed\n", NGINX);
        return false;
    }
    snprintf(n->dir, sizeof n->dir, "/tmp/ll-nginx-XXXXXX");
    if (!mkdtemp(n->dir)) {
        n->dir[0] = 0;
        return false;
    }
    n->echo = access(ECHO_MODULE, R_OK) == 0;
    if (!make_files(n)) {
        lt_nginx_stop(n);
        return false;
    }
    for (int attempt = 0; attempt < 5; attempt++) {
        n->port = lt_free_port();
        n->tls_port = lt_free_port();
        if (n->port <= 0 || n->tls_port <= 0 || n->port == n->tls_port) continue;
        if (!write_conf(n)) break;
        if (launch(n)) {
            snprintf(n->base, sizeof n->base, "http://127.0.0.1:%d", n->port);
            snprintf(n->tls_base, sizeof n->tls_base, "https://localhost:%d", n->tls_port);
            return true;
        }
    }
    char log[512];
    snprintf(log, sizeof log, "%s/error.log", n->dir);
    fprintf(stderr, "nginxserver: nginx did not start (see %s)\n", log);
    FILE *f = fopen(log, "r");
    if (f) {
        char line[512];
        while (fgets(line, sizeof line, f)) fprintf(stderr, "  %s", line);
        fclose(f);
    }
    lt_nginx_stop(n);
    return false;
}

void lt_nginx_stop(lt_nginx *n) {
    if (n->pid > 0) {
        kill(n->pid, SIGTERM); /* fast shutdown: idle keep-alive clients do not hold it up */
        int st;
        bool gone = false;
        for (int i = 0; i < 500 && !gone; i++) {
            if (waitpid(n->pid, &st, WNOHANG) == n->pid) gone = true;
            else sleep_ms(10);
        }
        if (!gone) {
            kill(n->pid, SIGKILL);
            waitpid(n->pid, &st, 0);
        }
        n->pid = 0;
    }
    if (n->dir[0]) {
        lt_rmtree(n->dir);
        n->dir[0] = 0;
    }
}

#!/usr/bin/env python3
"""Seeds a running Lectern through its public API: a demo owner and student, a
published course, and lectures uploaded with tus from real sample videos. Idempotent:
what exists is reused. Prints the credentials and a signed playback URL."""
import sys
import time

import requests
from tusclient import client

BASE, MEDIA = sys.argv[1].rstrip("/"), sys.argv[2]
OWNER = {"email": "teacher@demo.lectern", "password": "lectern-demo", "name": "Demo Teacher", "role": "owner"}
STUDENT = {"email": "student@demo.lectern", "password": "lectern-demo", "name": "Demo Student", "role": "student"}
LECTURES = [("Welcome: a screencast with webcam", "good/screencast_webcam_h264_aac_720p.mp4"),
            ("Working with two monitors", "good/gnome_screencast_vp8_1024x768_37s.webm")]


def wait_up():
    for _ in range(600):
        try:
            if requests.get(BASE + "/readyz", timeout=1).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    sys.exit("Lectern did not start")


def session(account):
    r = requests.post(BASE + "/api/auth/login", json={"email": account["email"], "password": account["password"]})
    if r.status_code != 200:
        r = requests.post(BASE + "/api/auth/signup", json=account)
        r.raise_for_status()
    return {"Authorization": "Bearer " + r.json()["token"]}


def main():
    wait_up()
    owner, student = session(OWNER), session(STUDENT)
    mine = requests.get(BASE + "/api/courses", params={"mine": "true", "q": "Lectern tour"}, headers=owner).json()["items"]
    if mine:
        course = mine[0]
    else:
        course = requests.post(BASE + "/api/courses", headers=owner, json={
            "title": "A Lectern tour", "description": "Two short real recordings, transcoded to adaptive HLS.",
            "category": "demo", "published": True}).json()
    lectures = requests.get(f"{BASE}/api/courses/{course['id']}", headers=owner).json()["lectures"]
    for title, file in LECTURES:
        lecture = next((l for l in lectures if l["title"] == title), None)
        if lecture is None:
            lecture = requests.post(f"{BASE}/api/courses/{course['id']}/lectures", headers=owner, json={"title": title}).json()
        if lecture["status"] in ("awaiting_upload", "failed"):
            tus = client.TusClient(BASE + "/api/uploads", headers=owner)
            tus.uploader(f"{MEDIA}/{file}", chunk_size=2 << 20,
                         metadata={"lecture_id": lecture["id"], "filename": file.rsplit("/", 1)[1]}).upload()
    requests.post(f"{BASE}/api/courses/{course['id']}/enroll", headers=student)
    first = None
    for _ in range(600):
        lectures = requests.get(f"{BASE}/api/courses/{course['id']}", headers=owner).json()["lectures"]
        if all(l["status"] in ("ready", "failed") for l in lectures):
            break
        time.sleep(0.5)
    first = next((l for l in lectures if l["status"] == "ready"), None)
    for l in lectures:
        if l["status"] == "failed":
            print(f"  lecture “{l['title']}” failed: {l['failure_reason']}", file=sys.stderr)
    print()
    print("Lectern is running: open", BASE)
    print(f"  teacher: {OWNER['email']} / {OWNER['password']}")
    print(f"  student: {STUDENT['email']} / {STUDENT['password']}")
    print(f"  course:  {BASE}/#/courses/{course['id']}")
    if first:
        grant = requests.post(f"{BASE}/api/lectures/{first['id']}/playback", headers=student).json()
        print(f"  watch:   {BASE}/#/watch/{first['id']}")
        print(f"  HLS:     {BASE}{grant['url']}")
        print("           (a signed master playlist for VLC, ffplay or Safari; valid for an hour)")
    print("Press Ctrl-C to stop.")
    sys.stdout.flush()


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Region packing, measured and dropped (issue 14, session 25).

Would packing the moving regions of several cameras into one 300 x 300
detector input (a mosaic) let one SSD call serve several cameras without
losing detections? For K cameras playing vtest.avi at different offsets,
each step: motion cells as `[motion]` finds them (a grey grid 96 cells
across, 16 grey levels from both the running background and the last
frame), dilated, boxed with a margin of MARG cells, plus the previous
step's boxes of that camera; boxes cut from the frame resized to 300 x 300
(so people keep the scale the detector sees in a whole frame), shelf-packed
into canvases; a whole frame every 10th step per camera, or when the boxes
cover 45 % of it. The int8 SSD runs on the canvases; its boxes go back to
their cameras by their centres. Agreement: person boxes (score >= 0.5, IoU
>= 0.5) against the float SSD on every whole frame.

  .cache/venv/bin/python edge-node/bench/mosaic_probe.py 4 60          # margin 4 cells
  MARG=8 .cache/venv/bin/python edge-node/bench/mosaic_probe.py 4 60
  FULL=1 .cache/venv/bin/python edge-node/bench/mosaic_probe.py 4 60   # whole frames only

Session 25: whole frames F1 0.981 (1.00 calls per camera-frame); margin 4
F1 0.812 at 0.58 calls; margin 8 F1 0.886 at 0.94 calls. The SSD needs the
context a whole frame gives: the goal is 0.97.
"""
import os
import sys
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

M=os.environ.get('VIDAR_MODEL_DIR', str(Path(__file__).resolve().parents[2] / '.cache/models')) + '/'
anchors=np.load(M+'ssd_anchors_ycxchw.npy')
def sess(p):
    o=ort.SessionOptions(); o.intra_op_num_threads=1
    return ort.InferenceSession(p,o,providers=['CPUExecutionProvider'])
fp=sess(M+'ssd_mobilenet_v2_coco_raw_batch.onnx'); q=sess(M+'ssd_mobilenet_v2_coco_raw_int8.onnx')
IN='normalized_input_image_tensor'
def iou(a,b):
    ix=max(0,min(a[2],b[2])-max(a[0],b[0])); iy=max(0,min(a[3],b[3])-max(a[1],b[1])); i=ix*iy
    u=(a[2]-a[0])*(a[3]-a[1])+(b[2]-b[0])*(b[3]-b[1])-i; return i/u if u>0 else 0
def nms(boxes,scores):
    out=[]
    for i in np.argsort(-scores):
        if all(iou(boxes[i],boxes[j])<0.5 for j in out): out.append(i)
    return out
def raw(s,x):
    loc,sc=s.run(None,{IN:x}); return loc,sc
def dec(loc,scores,thr=0.5):
    yc=loc[:,0]/10*anchors[:,2]+anchors[:,0]; xc=loc[:,1]/10*anchors[:,3]+anchors[:,1]
    h=np.exp(loc[:,2]/5)*anchors[:,2]; w=np.exp(loc[:,3]/5)*anchors[:,3]
    s=scores[:,1]; k=s>=thr
    b=np.stack([xc-w/2,yc-h/2,xc+w/2,yc+h/2],1)[k]; return b,s[k]
cap=cv2.VideoCapture('/usr/share/doc/opencv-doc/examples/data/vtest.avi')
V=[]
while True:
    ok,f=cap.read()
    if not ok: break
    V.append(f)
N=len(V); H,W=V[0].shape[:2]; print("frames",N,W,H)
K=int(sys.argv[1]) if len(sys.argv)>1 else 4
STEPS=int(sys.argv[2]) if len(sys.argv)>2 else 100
MARG=int(os.environ.get('MARG','4')) # cells
GAP=4; cell=W//96
offs=[(190*c)%N for c in range(K)]
st=[dict(bg=None,last=None,prev=[]) for _ in range(K)]
tp=fn=fpos=0; calls=0; fulls=0; canv_fill=[]
def f1(ref,got):
    used=set(); t=0
    for x in ref:
        m=[j for j,y in enumerate(got) if j not in used and iou(x,y)>=0.5]
        if m: used.add(m[0]); t+=1
    return t,len(ref)-t,len(got)-len(used)
for t in range(STEPS):
    items=[] # (cam, rect in 300px coords)
    small={}; full=[]
    for c in range(K):
        f=V[(t*2+offs[c])%N]  # vtest ~ 10fps? step 1
        s=st[c]
        g=cv2.cvtColor(f,cv2.COLOR_BGR2GRAY).astype(np.float32)
        grid=cv2.resize(g,(W//cell,H//cell),interpolation=cv2.INTER_AREA)
        x300=cv2.cvtColor(cv2.resize(f,(300,300)),cv2.COLOR_BGR2RGB)
        small[c]=x300
        if s['bg'] is None:
            s['bg']=grid.copy(); s['last']=grid.copy(); full.append(c); continue
        m=(np.abs(grid-s['bg'])>16)&(np.abs(grid-s['last'])>16)
        s['bg']=s['bg']*0.95+grid*0.05; s['last']=grid
        if (t+c)%10==0 or os.environ.get("FULL"): full.append(c); continue
        gh,gw=m.shape
        mask=np.zeros((gh,gw),np.uint8)
        d=cv2.dilate(m.astype(np.uint8),np.ones((3,3),np.uint8))
        n,lab,sts,_=cv2.connectedComponentsWithStats(d,connectivity=8)
        for k in range(1,n):
            x,y,w,h,a=sts[k]
            if m[lab==k].sum()<2: continue
            mask[max(0,y-MARG):y+h+MARG,max(0,x-MARG):x+w+MARG]=1
        for b in s['prev']: # previous detections in 0..1 coords
            x0=int(b[0]*gw)-MARG;y0=int(b[1]*gh)-MARG;x1=int(np.ceil(b[2]*gw))+MARG;y1=int(np.ceil(b[3]*gh))+MARG
            mask[max(0,y0):y1,max(0,x0):x1]=1
        # merge into boxes: connected comps of mask, bounding boxes, iterate until no overlap
        n,lab,sts,_=cv2.connectedComponentsWithStats(mask,connectivity=8)
        rects=[[x,y,x+w,y+h] for x,y,w,h,a in sts[1:]]
        changed=True
        while changed:
            changed=False
            for i in range(len(rects)):
                for j in range(i+1,len(rects)):
                    a,b=rects[i],rects[j]
                    if a[0]<b[2] and b[0]<a[2] and a[1]<b[3] and b[1]<a[3]:
                        rects[i]=[min(a[0],b[0]),min(a[1],b[1]),max(a[2],b[2]),max(a[3],b[3])]; rects.pop(j); changed=True; break
                if changed: break
        area=sum((r[2]-r[0])*(r[3]-r[1]) for r in rects)/(gw*gh)
        if area>0.45: full.append(c); continue
        for r in rects:
            px=[int(r[0]/gw*300),int(r[1]/gh*300),int(np.ceil(r[2]/gw*300)),int(np.ceil(r[3]/gh*300))]
            px=[max(0,px[0]),max(0,px[1]),min(300,px[2]),min(300,px[3])]
            items.append((c,px))
    # pack: shelf by height desc
    items.sort(key=lambda it:-(it[1][3]-it[1][1]))
    canvases=[]  # list of (img, placements, shelves)
    for c,px in items:
        w=px[2]-px[0]; h=px[3]-px[1]; placed=False
        for cv in canvases:
            for sh in cv['shelves']:
                if sh['h']>=h and sh['x']+w<=300:
                    cv['pl'].append((c,px,sh['x'],sh['y'])); sh['x']+=w+GAP; placed=True; break
            if placed: break
            top=cv['top']
            if top+h<=300:
                cv['shelves'].append(dict(y=top,h=h,x=w+GAP)); cv['pl'].append((c,px,0,top)); cv['top']=top+h+GAP; placed=True; break
        if not placed:
            canvases.append(dict(shelves=[dict(y=0,h=h,x=w+GAP)],pl=[(c,px,0,0)],top=h+GAP))
    got={c:[] for c in range(K)}
    for c in full:
        calls+=1; fulls+=1
        loc,sc=raw(q,small[c][None]); b,s=dec(loc[0],sc[0]); keep=nms(b,s); got[c]=[b[i] for i in keep]
    for cv in canvases:
        img=np.full((300,300,3),114,np.uint8)
        for c,px,x,y in cv['pl']:
            img[y:y+px[3]-px[1],x:x+px[2]-px[0]]=small[c][px[1]:px[3],px[0]:px[2]]
        calls+=1; canv_fill.append(sum((px[2]-px[0])*(px[3]-px[1]) for _,px,_,_ in cv['pl'])/90000)
        loc,sc=raw(q,img[None]); b,s=dec(loc[0],sc[0])
        bb=b*300
        per={}
        for i in range(len(bb)):
            cx=(bb[i,0]+bb[i,2])/2; cy=(bb[i,1]+bb[i,3])/2
            for c,px,x,y in cv['pl']:
                w=px[2]-px[0]; h=px[3]-px[1]
                if x<=cx<x+w and y<=cy<y+h:
                    bx=[max(bb[i,0],x)-x+px[0],max(bb[i,1],y)-y+px[1],min(bb[i,2],x+w)-x+px[0],min(bb[i,3],y+h)-y+px[1]]
                    per.setdefault(c,[]).append((np.array(bx)/300,s[i])); break
        for c,l in per.items():
            got[c].extend(x for x,_ in l)
    for c in range(K):
        # dedupe per frame
        if got[c]:
            bs=np.array(got[c]); keep=nms(bs,np.ones(len(bs))); got[c]=[bs[i] for i in keep]
        st[c]['prev']=got[c]
        loc,sc=raw(fp,small[c][None]); b,s=dec(loc[0],sc[0]); ref=[b[i] for i in nms(b,s)]
        a,bn,cfp=f1(ref,got[c]); tp+=a; fn+=bn; fpos+=cfp
P=tp/max(tp+fpos,1); R=tp/max(tp+fn,1)
print(f"K={K} steps={STEPS} marg={MARG}: detector calls per camera-frame {calls/(K*STEPS):.3f} (full {fulls/(K*STEPS):.3f}), canvas fill {np.mean(canv_fill) if canv_fill else 0:.2f}; agreement vs float full: ref {tp+fn} P {P:.3f} R {R:.3f} F1 {2*P*R/max(P+R,1e-9):.3f}")

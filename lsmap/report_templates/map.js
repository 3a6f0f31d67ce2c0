(function(){
  var NS='http://www.w3.org/2000/svg';
  var data=JSON.parse(document.getElementById('landslide-geojson').textContent);
  var foot=JSON.parse(document.getElementById('scene-footprints').textContent);
  // Scene pictures resampled by lsmap.report onto a lon/lat grid: in the projection below a
  // lon/lat grid is axis-aligned, so each one is placed exactly by its four bounds.
  var bgs=JSON.parse(document.getElementById('map-backgrounds').textContent)||[];
  var svg=document.getElementById('map'), status=document.getElementById('map-status');
  var tip=document.getElementById('map-tooltip'), info=document.getElementById('map-info');
  var feats=data.features||[], fps=foot.features||[];
  function polys(g){if(!g)return[];return g.type==='Polygon'?[g.coordinates]:(g.type==='MultiPolygon'?g.coordinates:[]);}
  var minx=Infinity,miny=Infinity,maxx=-Infinity,maxy=-Infinity;
  feats.concat(fps).forEach(function(f){polys(f.geometry).forEach(function(p){p[0].forEach(function(c){
    if(c[0]<minx)minx=c[0];if(c[0]>maxx)maxx=c[0];if(c[1]<miny)miny=c[1];if(c[1]>maxy)maxy=c[1];});});});
  bgs.forEach(function(b){minx=Math.min(minx,b.west);maxx=Math.max(maxx,b.east);miny=Math.min(miny,b.south);maxy=Math.max(maxy,b.north);});
  if(!isFinite(minx)){status.textContent='0 polygons drawn (nothing to map)';svg.setAttribute('data-polygons','0');return;}
  // Local equirectangular projection in metres around the centre: shapes and the scale bar are true
  // to well under 1 % across a region of a few tens of km.
  var lat0=(miny+maxy)/2, lon0=(minx+maxx)/2, M=6371008.8*Math.PI/180, kx=Math.cos(lat0*Math.PI/180)*M;
  function xy(c){return[(c[0]-lon0)*kx,-(c[1]-lat0)*M];}
  // Path data plus the projected bounding box (computed here: getBBox() would force a layout per polygon).
  var bb;
  function pathData(g){var d='';bb=[Infinity,Infinity,-Infinity,-Infinity];
    polys(g).forEach(function(p){p.forEach(function(r){r.forEach(function(c,i){var q=xy(c);
      if(q[0]<bb[0])bb[0]=q[0];if(q[1]<bb[1])bb[1]=q[1];if(q[0]>bb[2])bb[2]=q[0];if(q[1]>bb[3])bb[3]=q[1];
      d+=(i?'L':'M')+q[0].toFixed(1)+' '+q[1].toFixed(1);});d+='Z';});});return d;}
  var a=xy([minx,maxy]), b=xy([maxx,miny]), w=Math.max(b[0]-a[0],1), h=Math.max(b[1]-a[1],1), pad=0.05*Math.max(w,h);
  svg.setAttribute('viewBox',[a[0]-pad,a[1]-pad,w+2*pad,h+2*pad].join(' '));
  svg.setAttribute('preserveAspectRatio','xMidYMid meet');
  var layer=document.createElementNS(NS,'g'); svg.appendChild(layer);
  // Scene extents first (grey: unobserved), their observed footprints on top (light).
  ['extent','observed'].forEach(function(kind){fps.forEach(function(f){if((f.properties.kind||'extent')!==kind)return;
    var p=document.createElementNS(NS,'path');p.setAttribute('class','footprint '+kind);p.setAttribute('d',pathData(f.geometry));p.setAttribute('fill-rule','evenodd');
    var t=document.createElementNS(NS,'title');t.textContent='scene '+f.properties.scene_id+(kind==='extent'?' (grey: not observed)':' (observed)');p.appendChild(t);layer.appendChild(p);});});
  // Imagery above the footprints (transparent where a scene has no data), below the polygons.
  bgs.forEach(function(b){var p=xy([b.west,b.north]), q=xy([b.east,b.south]), im=document.createElementNS(NS,'image');
    im.setAttribute('class','background');im.setAttribute('href',b.href);im.setAttribute('preserveAspectRatio','none');
    im.setAttribute('x',p[0]);im.setAttribute('y',p[1]);im.setAttribute('width',q[0]-p[0]);im.setAttribute('height',q[1]-p[1]);
    var t=document.createElementNS(NS,'title');t.textContent='scene '+b.scene_id+(b.acquired?', acquired '+b.acquired:'');im.appendChild(t);layer.appendChild(im);});
  svg.setAttribute('data-backgrounds',String(bgs.length));
  var dots=document.createElementNS(NS,'g'), shapes=document.createElementNS(NS,'g'); layer.appendChild(dots); layer.appendChild(shapes);
  function fmt(v,d){return (typeof v==='number')?v.toLocaleString('en-US',{maximumFractionDigits:d}):String(v);}
  function label(p){return 'Landslide '+(p.id!==undefined?p.id:'')+': '+fmt(p.area_m2,0)+' m²'+(p.prob_mean!==undefined?', p̄ '+fmt(p.prob_mean,2):'')+(p.acquired?', '+p.acquired:'');}
  var selected=null;
  function show(f,el){ if(selected)selected.classList.remove('selected'); selected=el.tagName==='path'?el:null; if(selected)selected.classList.add('selected');
    var rows=Object.keys(f.properties).map(function(k){return '<tr><th>'+k+'</th><td></td></tr>';}).join('');
    info.innerHTML='<table>'+rows+'</table>'; var tds=info.querySelectorAll('td');
    Object.keys(f.properties).forEach(function(k,i){tds[i].textContent=fmt(f.properties[k],7);}); }
  function hover(f,el){el.addEventListener('mousemove',function(e){tip.textContent=label(f.properties);tip.hidden=false;
      var r=svg.getBoundingClientRect();tip.style.left=(e.clientX-r.left+12)+'px';tip.style.top=(e.clientY-r.top+12)+'px';});
    el.addEventListener('mouseleave',function(){tip.hidden=true;});
    el.addEventListener('click',function(e){e.stopPropagation();show(f,el);});}
  var drawn=0, dotEls=[], nNew=0;
  // With a pass list, lsmap.report marks each landslide new_in_latest_pass true/false: new ones
  // are drawn last (on top), in their own style.
  var passes=feats.some(function(f){return f.properties.new_in_latest_pass!==undefined;});
  function isNew(f){return f.properties.new_in_latest_pass===true;}
  feats.filter(function(f){return !isNew(f);}).concat(feats.filter(isNew)).forEach(function(f){var d=pathData(f.geometry);if(!d)return;
    var age=isNew(f)?'new':'earlier'; if(isNew(f))nNew++;
    var p=document.createElementNS(NS,'path');p.setAttribute('class','ls '+age);p.setAttribute('d',d);p.setAttribute('fill-rule','evenodd');shapes.appendChild(p);hover(f,p);
    var c=document.createElementNS(NS,'circle');c.setAttribute('class','dot '+age);c.setAttribute('cx',((bb[0]+bb[2])/2).toFixed(1));c.setAttribute('cy',((bb[1]+bb[3])/2).toFixed(1));
    c._size=Math.max(bb[2]-bb[0],bb[3]-bb[1]);dots.appendChild(c);dotEls.push(c);hover(f,c);drawn++;});
  // View state: layer transform translate(tx,ty) scale(s), in viewBox units.
  var view={s:1,tx:0,ty:0};
  function unitsPerPx(){var r=svg.getBoundingClientRect();return Math.max((w+2*pad)/r.width,(h+2*pad)/r.height);}
  function apply(){layer.setAttribute('transform','translate('+view.tx+' '+view.ty+') scale('+view.s+')');
    var upp=unitsPerPx()/view.s, r=2*upp;  // dots: 2 screen px, hidden once the polygon itself is 8 px wide
    dotEls.forEach(function(c){c.setAttribute('r',r);c.style.display=(c._size/upp>8)?'none':'';});
    var target=110*upp, e=Math.pow(10,Math.floor(Math.log10(target))), n=[5,2,1].map(function(m){return m*e;}).filter(function(v){return v<=target;})[0]||e;
    document.getElementById('map-scale-bar').style.width=(n/upp)+'px';
    document.getElementById('map-scale-label').textContent=n>=1000?(n/1000)+' km':n+' m';}
  function toUser(e){var pt=svg.createSVGPoint();pt.x=e.clientX;pt.y=e.clientY;return pt.matrixTransform(svg.getScreenCTM().inverse());}
  function zoomAt(u,f){view.tx=u.x-(u.x-view.tx)*f;view.ty=u.y-(u.y-view.ty)*f;view.s*=f;apply();}
  function centre(){var vb=svg.viewBox.baseVal;return{x:vb.x+vb.width/2,y:vb.y+vb.height/2};}
  svg.addEventListener('wheel',function(e){e.preventDefault();zoomAt(toUser(e),e.deltaY<0?1.25:0.8);},{passive:false});
  var drag=null;
  svg.addEventListener('pointerdown',function(e){drag={u:toUser(e),tx:view.tx,ty:view.ty};svg.classList.add('dragging');svg.setPointerCapture(e.pointerId);});
  svg.addEventListener('pointermove',function(e){if(!drag)return;var u=toUser(e);view.tx=drag.tx+u.x-drag.u.x;view.ty=drag.ty+u.y-drag.u.y;apply();});
  svg.addEventListener('pointerup',function(){drag=null;svg.classList.remove('dragging');});
  document.getElementById('zoom-in').onclick=function(){zoomAt(centre(),1.5);};
  document.getElementById('zoom-out').onclick=function(){zoomAt(centre(),1/1.5);};
  document.getElementById('zoom-reset').onclick=function(){view={s:1,tx:0,ty:0};apply();};
  window.addEventListener('resize',apply); apply();
  function toggle(id,cls){var box=document.getElementById(id);document.getElementById(id+'-label').hidden=false;
    box.addEventListener('change',function(){svg.classList.toggle(cls,!box.checked);});}
  if(passes){document.getElementById('legend-new').hidden=false;document.getElementById('legend-new-count').textContent=' ('+nNew+')';
    document.getElementById('legend-earlier-label').textContent='earlier';toggle('toggle-earlier','hide-earlier');}
  if(bgs.length)toggle('toggle-imagery','hide-imagery');
  svg.setAttribute('data-polygons',String(drawn));svg.setAttribute('data-new',String(nNew));
  status.textContent=drawn+' polygon'+(drawn===1?'':'s')+' drawn · drag to pan, wheel to zoom';
})();
